"""The many-task path of the tiled engine, measured without the model's cost.

A real checkpoint of a Diff-NCA with 0 NCA steps predicts zero noise (its forward is
the read-out of an all-zero hidden state), so a run of `synthesize` here is the whole
synth path at full size with almost no compute: the tile plan, one Dask task per tile
per diffusion step, the float16 state read with its halo and written per chunk, the
sampler step, level 0, the pyramid, the OME-TIFF and the preview. Measured: the time of
each phase, driver time and scheduler overhead per task (Dask's task stream gives each
task's own compute time), I/O rates, the process's RSS over time and the work folder's
allocated size over time; then projected to a larger slide.

    nice -n 19 python experiments/pipeline_bench.py --size 32768 --steps 3 \
        --out-dir /work/bench-pipeline --json docs/bench/pipeline-32768.json

Check the free disk first (`df -h`): the run needs about 12 B/px for the state, 4 B/px
for the OME-Zarr and ~0.3 B/px for the JPEG OME-TIFF (the preflight refuses otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from distributed import get_task_stream

from gigasynth.checkpoint import save_checkpoint
from gigasynth.cluster import connect, default_workers
from gigasynth.config import ModelConfig
from gigasynth.models import build_model
from gigasynth.synth import SynthProgress, SynthSpec, synthesize
from gigasynth.synth.preflight import Needs
from gigasynth.synth.state import allocated_bytes, work_path
from gigasynth.tiling import plan_tiles

# The least Diff-NCA there is: 7 channels (image, read-out, one hidden), no NCA steps.
ZERO_STEP = ModelConfig(
    kind="diff-nca", channels=7, hidden=4, nca_steps=0, cond_hidden=4, timesteps=300
)
PAGE = os.sysconf("SC_PAGE_SIZE")


def zero_step_checkpoint(folder: Path) -> str:
    """A checkpoint whose model predicts zero noise (0 NCA steps, so halo 0)."""
    model = build_model(ZERO_STEP).eval()
    return str(
        save_checkpoint(
            folder, model, ZERO_STEP, {"mpp": 0.5, "name": "zero-step (pipeline benchmark)"}
        )
    )


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class Sampler:
    """Polls the process's RSS and the work folder's allocated bytes in a thread."""

    def __init__(self, folders: list[Path], interval_s: float) -> None:
        self.folders, self.interval_s = folders, interval_s
        self.samples: list[tuple[float, int, int]] = []  # (t, rss, work folder)
        self.phase_marks: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.start = time.perf_counter()

    def _run(self) -> None:
        while not self._stop.is_set():
            size = sum(allocated_bytes(f) for f in self.folders if f.exists())
            self.samples.append((time.perf_counter() - self.start, rss_bytes(), size))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def phase_times(marks: list[tuple[str, float]], end: float) -> dict[str, float]:
    """Seconds per phase from the first report of each phase to the next phase's first."""
    firsts: list[tuple[str, float]] = []
    for phase, t in marks:
        if not firsts or firsts[-1][0] != phase:
            firsts.append((phase, t))
    times = {}
    for (phase, t0), (_, t1) in zip(firsts, [*firsts[1:], ("end", end)], strict=True):
        times[phase] = times.get(phase, 0.0) + t1 - t0
    times.pop("done", None)
    return times


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system) of this process's threads so far, by role: the driver
    (the main thread: submission, waiting, progress), Dask's event loop (scheduler,
    worker and client messages; the embedded cluster runs in this process), the worker
    threads (the tile tasks, with zarr's I/O thread) and the rest (Dask's offload
    thread, the samplers of this script); from /proc/self/task/TID/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    main = threading.main_thread().native_id
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tid = int(task.name)
        name = names.get(tid, "")
        role = (
            "driver"
            if tid == main
            else "tasks"  # the tile tasks, their read-ahead threads, zarr's I/O threads
            if any(
                part in name for part in ("Dask-Default-Threads", "gigasynth-io", "zarr", "asyncio")
            )
            else "event_loop"
            if name == "IO loop"
            else "other"
        )
        out[role] = out.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


def run(args: argparse.Namespace, block_steps: int, steady_from: int) -> dict[str, Any]:
    """One synthesize run at `block_steps` diffusion steps per tile task, measured."""
    out_dir = Path(args.out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = zero_step_checkpoint(out_dir / "zero-step")
    out = out_dir / "slide.ome.zarr"
    tiff = out_dir / "slide.ome.tif"
    work_dir = Path(args.work_dir).absolute() if args.work_dir else None
    spec = SynthSpec(
        checkpoint,
        args.size,
        args.size,
        seed=1,
        steps=args.steps,
        tile=args.tile,
        tiff_compression="jpeg",
    )
    workers = args.workers or default_workers()
    needs: list[Needs] = []
    folders = [work_path(out)] + ([work_dir] if work_dir is not None else [])
    with connect(None, workers) as client, Sampler(folders, args.interval) as sampler:
        marks = sampler.phase_marks

        steps_at: list[tuple[int, float]] = []
        cpu_marks: list[dict[str, float]] = []  # at the denoise phase's start and end

        def progress(p: SynthProgress) -> None:
            marks.append((p.phase, time.perf_counter() - sampler.start))
            if p.phase == "denoise":
                steps_at.append((p.step, time.perf_counter() - sampler.start))
            if len(cpu_marks) == (0 if p.phase == "denoise" else 1):
                cpu_marks.append(thread_cpu_s())

        with get_task_stream(client) as stream:
            result = synthesize(
                spec,
                out,
                ome_tiff=tiff,
                preview=out_dir / "preview.png",
                client=client,
                overwrite=True,
                progress=progress,
                work_dir=work_dir,
                on_needs=needs.append,
                block_steps=block_steps,
            )
        end = time.perf_counter() - sampler.start
        cpu = {k: v - cpu_marks[0].get(k, 0.0) for k, v in cpu_marks[1].items()}
        tasks = stream.data
    phases = phase_times(marks, end)
    plan = plan_tiles(args.size, args.size, args.tile, 0)
    tile_tasks = [
        t
        for t in tasks
        if str(t.get("key", "")).startswith("gigasynth-") and "uint8" not in str(t.get("key", ""))
    ]
    compute = [
        sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "compute")
        for t in tile_tasks
    ]
    n_tasks = len(plan) * -(-args.steps // block_steps)
    pixels = args.size * args.size
    denoise_s = phases.get("denoise", 0.0)
    level0_bytes = allocated_bytes(out / "0" / "0")
    slide_bytes = allocated_bytes(out)
    peak_rss = max(s[1] for s in sampler.samples)
    peak_work = max(s[2] for s in sampler.samples)
    state_bytes = pixels * 6
    need = needs[0]
    report = {
        "size": args.size,
        "tile": args.tile,
        "steps": args.steps,
        "block_steps": block_steps,
        "workers": workers,
        "cpus": os.cpu_count(),
        "load_avg_1m_end": os.getloadavg()[0],
        "tiles_per_step": len(plan),
        "tile_tasks": n_tasks,
        "tile_tasks_in_stream": len(tile_tasks),
        "phases_s": {k: round(v, 1) for k, v in phases.items()},
        "total_s": round(result.seconds, 1),
        "denoise": {
            "driver_ms_per_task": round(denoise_s / n_tasks * 1e3, 2),
            "task_compute_ms_mean": round(sum(compute) / max(1, len(compute)) * 1e3, 2),
            "scheduler_overhead_ms_per_task": round(
                (denoise_s * workers - sum(compute)) / n_tasks * 1e3, 2
            ),
            "state_read_mb_s": round(plan.read_pixels * 6 * args.steps / denoise_s / 1e6, 1),
            "state_write_mb_s": round(state_bytes * args.steps / denoise_s / 1e6, 1),
            "mpx_per_s_per_step": round(pixels * args.steps / denoise_s / 1e6, 2),
            "plumbing_ms_per_step_per_mpx": round(denoise_s / args.steps / (pixels / 1e6) * 1e3, 2),
            # From the first report of step `steady_from` on (x_T, the keyed initial
            # noise, is computed in the first block: a cost per slide, not per step).
            "steady_plumbing_ms_per_step_per_mpx": steady(
                steps_at, marks, steady_from, args.steps, pixels
            ),
            "thread_cpu_ms_per_task": {
                role: round(seconds / n_tasks * 1e3, 2) for role, seconds in sorted(cpu.items())
            },
        },
        "level0": {
            "read_mb_s": round(state_bytes / phases["level0"] / 1e6, 1),
            "written_mb_s": round(level0_bytes / phases["level0"] / 1e6, 1),
            "mpx_s": round(pixels / phases["level0"] / 1e6, 1),
        },
        "pyramid": {"mpx_s_of_level0": round(pixels / phases["pyramid"] / 1e6, 1)},
        "tiff": {
            "bytes": tiff.stat().st_size,
            "bytes_per_px": round(tiff.stat().st_size / pixels, 3),
            "mpx_s_of_level0": round(pixels / phases["tiff"] / 1e6, 1),
        },
        "slide_bytes_per_px": round(slide_bytes / pixels, 3),
        "peak_rss_mib": round(peak_rss / 2**20),
        "rss_mib_by_phase_end": rss_by_phase(marks, sampler.samples),
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "work_folder_peak_bytes_per_px": round(peak_work / pixels, 2),
        "preflight": {
            "state_peak_b_px": round(need.per_pixel(need.state_peak), 2),
            "slide_b_px": round(need.per_pixel(need.slide), 2),
            "tiff_b_px": round(need.per_pixel(need.tiff), 2),
            "task_memory_mib": round(need.task_memory / 2**20),
        },
        "work_folders": [str(f) for f in folders],
    }
    report["projection"] = project(report, args.project, args.project_steps)
    if not args.keep:
        shutil.rmtree(out_dir, ignore_errors=True)
    return report


def steady(
    steps_at: list[tuple[int, float]],
    marks: list[tuple[str, float]],
    start: int,
    steps: int,
    pixels: int,
) -> float | None:
    """ms per diffusion step per Mpx from the first report at or after step `start` to the
    end of the denoise phase (None: too few steps)."""
    begin = next((t for step, t in steps_at if step >= start), None)
    end = next((t for phase, t in marks if phase != "denoise"), None)
    if begin is None or end is None or steps <= start:
        return None
    return round((end - begin) / (steps - start) / (pixels / 1e6) * 1e3, 2)


def rss_by_phase(
    marks: list[tuple[str, float]], samples: list[tuple[float, int, int]]
) -> dict[str, int]:
    """The largest RSS sampled during each phase, MiB."""
    bounds = phase_times(marks, samples[-1][0] if samples else 0.0)
    out = {}
    starts: dict[str, float] = {}
    for phase, when in marks:
        starts.setdefault(phase, when)
    for phase, start in starts.items():
        stop = start + bounds.get(phase, 0.0)
        inside = [s[1] for s in samples if start <= s[0] <= stop]
        if inside:
            out[phase] = round(max(inside) / 2**20)
    return out


def project(report: dict[str, Any], size: int, steps: int) -> dict[str, Any]:
    """The plumbing's time at `size`^2 and `steps` diffusion steps, from the rates above
    (per task for the denoising loop, per pixel for the rest)."""
    tile = report["tile"]
    tiles = (-(-size // tile)) ** 2
    tasks = tiles * steps
    scale = size * size / report["size"] ** 2
    d = report["denoise"]
    p = report["phases_s"]
    denoise_h = tasks * d["driver_ms_per_task"] / 1e3 / 3600
    rest_h = (p["level0"] + p["pyramid"] + p["tiff"]) * scale / 3600
    return {
        "size": size,
        "steps": steps,
        "tiles_per_step": tiles,
        "tile_tasks": tasks,
        "denoise_plumbing_h": round(denoise_h, 2),
        "level0_pyramid_tiff_h": round(rest_h, 2),
        "total_plumbing_h": round(denoise_h + rest_h, 2),
        "work_folder_gb": round(12 * size * size / 1e9, 1),
        "slide_gb": round(report["slide_bytes_per_px"] * size * size / 1e9, 1),
        "tiff_gb": round(report["tiff"]["bytes_per_px"] * size * size / 1e9, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32768, help="slide side in px")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3, help="DDIM steps")
    parser.add_argument(
        "--block-steps",
        type=int,
        nargs="+",
        default=[1],
        help="diffusion steps per tile task; several: one run each, in this order, "
        "with the ratio of their plumbing per step to the first's",
    )
    parser.add_argument("--workers", type=int, help="tile tasks at once (default: one per core)")
    parser.add_argument("--out-dir", default="pipeline-bench", help="outputs (removed after)")
    parser.add_argument("--work-dir", help="the state's folder (default beside the outputs)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--project", type=int, default=100_000, help="project to this side")
    parser.add_argument("--project-steps", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the outputs")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    runs = [run(args, k, max(args.block_steps)) for k in args.block_steps]
    report: dict[str, Any] = runs[0] if len(runs) == 1 else {"runs": runs}
    if len(runs) > 1:
        for key in ("plumbing_ms_per_step_per_mpx", "steady_plumbing_ms_per_step_per_mpx"):
            first = runs[0]["denoise"][key]
            report[f"{key}_vs_first"] = {
                str(r["block_steps"]): round(r["denoise"][key] / first, 3) if first else None
                for r in runs
            }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
