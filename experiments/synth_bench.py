"""Measure the tiled engine: peak RSS vs slide area, tiled vs whole-image time, throughput,
and the cost of one tile task by tile size with and without the workers' allocator
settings (gigasynth.cluster.worker.steady_allocator).

Each synth measurement is a fresh `gigasynth synth` process (1 in-process worker, so the
process's peak RSS covers the workers too), timed and sized with os.wait4. Each tile
measurement is a fresh process running the real task function (`denoise_tiles`, one
thread) on the centre tile of a 3 x 3 tile state, several times after a warm-up: wall
and CPU time, minor page faults (ru_minflt) and RSS growth per task.

    nice -n 10 python experiments/synth_bench.py [--checkpoint CKPT] [--steps 2]
    nice -n 10 python experiments/synth_bench.py --only tiles [--reps 4]

Without --checkpoint it uses builtin:tiny-pathology, or a freshly initialised `tiny`
preset model when that is not installed (speed and memory do not depend on weights).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TILE_SIZES = (256, 512, 1024)


def default_checkpoint(tmp: Path) -> str:
    from gigasynth.checkpoint import save_checkpoint
    from gigasynth.config import preset
    from gigasynth.errors import GigasynthError
    from gigasynth.models import build_model

    try:
        from gigasynth.checkpoint import load_checkpoint

        load_checkpoint("builtin:tiny-pathology")
        return "builtin:tiny-pathology"
    except GigasynthError:
        model = build_model(preset("tiny"), zero_output=False)
        return str(save_checkpoint(tmp / "tiny", model, preset("tiny")))


def synth(
    checkpoint: str,
    size: int,
    tile: int,
    steps: int,
    tmp: Path,
    workers: int | None = None,
    one_thread: bool = False,
) -> dict:
    """One synth run; its wall time, peak RSS and reported throughput.

    workers None: the CLI default (one tile task per core); one_thread: OMP_NUM_THREADS=1.
    """
    out = tmp / f"s{size}-t{tile}.ome.zarr"
    argv = [
        sys.executable,
        "-m",
        "gigasynth",
        "synth",
        "--checkpoint",
        checkpoint,
        "--size",
        f"{size}x{size}",
        "--tile",
        str(tile),
        "--steps",
        str(steps),
        "--seed",
        "1",
        "--out",
        str(out),
        "--ome-tiff",
        str(out.with_suffix(".tif")),
        "--preview",
        str(out.with_suffix(".png")),
        "--overwrite",
    ]
    if workers is not None:
        argv += ["--workers", str(workers)]
    env = {**os.environ, **({"OMP_NUM_THREADS": "1"} if one_thread else {})}
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stdout = proc.stdout.read()
    if status != 0:
        raise SystemExit(f"synth failed ({status}): {' '.join(argv)}\n{stdout}")
    rate = re.search(r"([\d.]+) Mpx-steps/s", stdout)
    seconds = re.search(r"in ([\d.]+) s", stdout)
    return {
        "size": size,
        "tile": tile,
        "steps": steps,
        "workers": workers or "default",
        "one_thread": one_thread,
        "wall_s": round(wall, 1),
        "minflt": usage.ru_minflt,
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "synth_s": float(seconds.group(1)),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "mpx_steps_per_s": float(rate.group(1)),
    }


def tile_probe(checkpoint: str, tile: int, reps: int, tmp: Path) -> dict:
    """Per-task cost of the centre tile of a 3 x 3 tile slide (this process, one thread)."""
    from gigasynth.cluster import steady_allocator

    steady = steady_allocator()  # what a worker does at start-up, before any tensor
    import resource

    import torch

    from gigasynth.checkpoint import load_checkpoint
    from gigasynth.geometry import Window
    from gigasynth.sampling.step import initial_noise, round_state
    from gigasynth.synth import SynthSpec
    from gigasynth.synth.job import check_job
    from gigasynth.synth.state import WorkDir, write_region
    from gigasynth.synth.tasks import Exchange, denoise_tiles

    torch.set_num_threads(1)
    side = 3 * tile
    job = check_job(
        SynthSpec(checkpoint, side, side, seed=1, steps=50, tile=tile), load_checkpoint(checkpoint)
    )
    work = WorkDir(tmp / f"probe-{tile}")
    work.create()
    for step in (1, 2):
        work.create_buffer(work.x_buffer(step), 3, side, side, job.plan.chunk)
    for t in job.plan:  # x_t chunk by chunk, so no slide-sized temporaries
        rows, cols = t.slices
        noise = initial_noise([1], job.timesteps[1], 3, t.height, t.width, Window(t.y0, t.x0))
        write_region(work.x_buffer(1), rows, cols, round_state(noise)[0].numpy())
    exchange = Exchange(
        (job.timesteps[1],), job.exchanges[0], work.x_buffer(1), False, work.x_buffer(2), True, True
    )
    centre = job.plan[4]
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    base = peak = rss()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, rss())

    sampler = threading.Thread(target=sample)
    sampler.start()
    denoise_tiles(job.ref, exchange, (centre,), None)  # warm-up: first calls, model load
    walls, cpus, faults = [], [], []
    for _ in range(reps):
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        denoise_tiles(job.ref, exchange, (centre,), None)
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
        walls.append(wall)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        faults.append(after.ru_minflt - before.ru_minflt)
    done.set()
    sampler.join()
    mpx = tile * tile / 1e6
    return {
        "tile": tile,
        "steady_malloc": steady,
        "reps": reps,
        "wall_s_per_mpx": round(min(walls) / mpx, 2),
        "cpu_s_per_mpx": round(min(cpus) / mpx, 2),
        "minflt_per_task": sorted(faults)[len(faults) // 2],
        "minflt_per_mpx": round(sorted(faults)[len(faults) // 2] / mpx),
        "rss_growth_mib": round((peak - base) / 2**20),
    }


def tile_runs(checkpoint: str, reps: int) -> dict[str, dict]:
    """Tile probes in fresh processes, allocator settings alternating within each size."""
    runs = {}
    for tile in TILE_SIZES:
        for steady in (False, True):
            env = {
                **os.environ,
                "OMP_NUM_THREADS": "1",
                **({} if steady else {"GIGASYNTH_STEADY_MALLOC": "0"}),
            }
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--probe",
                    str(tile),
                    "--reps",
                    str(reps),
                    "--checkpoint",
                    checkpoint,
                ],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            runs[f"tile{tile}_{'steady' if steady else 'default'}"] = json.loads(
                proc.stdout.splitlines()[-1]
            )
            print(proc.stdout.splitlines()[-1], flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--steps", type=int, default=1, help="DDIM steps per run")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--only", choices=["memory", "ratio", "tiles"], help="run one part only")
    parser.add_argument("--reps", type=int, default=4, help="tasks timed per tile probe")
    parser.add_argument("--probe", type=int, help=argparse.SUPPRESS)  # one tile probe
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp_name:
        tmp = Path(tmp_name)
        checkpoint = args.checkpoint or default_checkpoint(tmp)
        if args.probe:
            print(json.dumps(tile_probe(checkpoint, args.probe, args.reps, tmp)))
            return
        if args.only == "tiles":
            for name, run in tile_runs(checkpoint, args.reps).items():
                print(
                    f"{name}: {run['wall_s_per_mpx']} s wall / {run['cpu_s_per_mpx']} s CPU "
                    f"per Mpx, {run['minflt_per_task']:,} minor faults per task, RSS "
                    f"+{run['rss_growth_mib']} MiB"
                )
            return
        plan = []
        if args.only in (None, "memory"):
            plan += [
                ("small", 1024, args.tile, None, False),
                ("large", 4096, args.tile, None, False),
            ]
        if args.only in (None, "ratio"):
            # Alternate tiled and whole-image runs (twice each) and keep each one's best:
            # on a shared machine the load changes between runs.
            plan += [
                (f"{name}_1t#{i}", 2048, tile, 1, True)
                for i in (1, 2)
                for name, tile in (("tiled", args.tile), ("whole", 0))
            ]
            plan += [("tiled", 2048, args.tile, None, False), ("whole", 2048, 0, None, False)]
        runs: dict[str, dict] = {}
        for name, size, tile, workers, one_thread in plan:
            runs[name] = synth(checkpoint, size, tile, args.steps, tmp, workers, one_thread)
            print(json.dumps(runs[name]), flush=True)
    print(f"checkpoint {checkpoint}, DDIM {args.steps} steps, {os.cpu_count()} CPUs")
    if "large" in runs:
        small, large = runs["small"]["peak_rss_mib"], runs["large"]["peak_rss_mib"]
        print(
            f"peak RSS 4096^2 / 1024^2 (tiles {args.tile}): {large} / {small} MiB = "
            f"{large / small:.2f}"
        )
    if "tiled" in runs:
        for key in ("synth_s", "cpu_s"):
            tiled = min(runs[f"tiled_1t#{i}"][key] for i in (1, 2))
            whole = min(runs[f"whole_1t#{i}"][key] for i in (1, 2))
            print(
                f"2048^2 tiled ({args.tile} px) / whole image, 1 task at a time on 1 thread, "
                f"best of 2, {key}: {tiled} / {whole} = {tiled / whole:.2f}"
            )
        tiled, whole = runs["tiled"]["synth_s"], runs["whole"]["synth_s"]
        print(
            f"2048^2 tiled / whole image with the CLI defaults (one tile task per core): "
            f"{tiled} / {whole} s = {tiled / whole:.2f}"
        )
    print(
        "throughput (denoising, useful px x NCA steps / s): "
        + ", ".join(f"{name} {run['mpx_steps_per_s']}" for name, run in runs.items())
    )


if __name__ == "__main__":
    main()
