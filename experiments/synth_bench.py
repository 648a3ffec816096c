"""Measure the tiled engine: peak RSS vs slide area, tiled vs whole-image time, throughput.

Each measurement is a fresh `gigasynth synth` process (1 in-process worker, so the
process's peak RSS covers the workers too), timed and sized with os.wait4.

    nice -n 10 python experiments/synth_bench.py [--checkpoint CKPT] [--steps 2]

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
import time
from pathlib import Path


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


def synth(checkpoint: str, size: int, tile: int, steps: int, tmp: Path,
          workers: int | None = None, one_thread: bool = False) -> dict:
    """One synth run; its wall time, peak RSS and reported throughput.

    workers None: the CLI default (one tile task per core); one_thread: OMP_NUM_THREADS=1.
    """
    out = tmp / f"s{size}-t{tile}.ome.zarr"
    argv = [sys.executable, "-m", "gigasynth", "synth", "--checkpoint", checkpoint,
            "--size", f"{size}x{size}", "--tile", str(tile), "--steps", str(steps),
            "--seed", "1", "--out", str(out), "--ome-tiff", str(out.with_suffix(".tif")),
            "--preview", str(out.with_suffix(".png")), "--overwrite"]
    if workers is not None:
        argv += ["--workers", str(workers)]
    env = {**os.environ, **({"OMP_NUM_THREADS": "1"} if one_thread else {})}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stdout = proc.stdout.read()
    if status != 0:
        raise SystemExit(f"synth failed ({status}): {' '.join(argv)}\n{stdout}")
    rate = re.search(r"([\d.]+) Mpx-steps/s", stdout)
    seconds = re.search(r"in ([\d.]+) s", stdout)
    return {"size": size, "tile": tile, "steps": steps, "workers": workers or "default",
            "one_thread": one_thread, "wall_s": round(wall, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "synth_s": float(seconds.group(1)), "peak_rss_mib": round(usage.ru_maxrss / 1024),
            "mpx_steps_per_s": float(rate.group(1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--steps", type=int, default=1, help="DDIM steps per run")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--only", choices=["memory", "ratio"], help="run one part only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp_name:
        tmp = Path(tmp_name)
        checkpoint = args.checkpoint or default_checkpoint(tmp)
        plan = []
        if args.only in (None, "memory"):
            plan += [("small", 1024, args.tile, None, False),
                     ("large", 4096, args.tile, None, False)]
        if args.only in (None, "ratio"):
            # Alternate tiled and whole-image runs (twice each) and keep each one's best:
            # on a shared machine the load changes between runs.
            plan += [(f"{name}_1t#{i}", 2048, tile, 1, True)
                     for i in (1, 2) for name, tile in (("tiled", args.tile), ("whole", 0))]
            plan += [("tiled", 2048, args.tile, None, False), ("whole", 2048, 0, None, False)]
        runs: dict[str, dict] = {}
        for name, size, tile, workers, one_thread in plan:
            runs[name] = synth(checkpoint, size, tile, args.steps, tmp, workers, one_thread)
            print(json.dumps(runs[name]), flush=True)
    print(f"checkpoint {checkpoint}, DDIM {args.steps} steps, {os.cpu_count()} CPUs")
    if "large" in runs:
        small, large = runs["small"]["peak_rss_mib"], runs["large"]["peak_rss_mib"]
        print(f"peak RSS 4096^2 / 1024^2 (tiles {args.tile}): {large} / {small} MiB = "
              f"{large / small:.2f}")
    if "tiled" in runs:
        for key in ("synth_s", "cpu_s"):
            tiled = min(runs[f"tiled_1t#{i}"][key] for i in (1, 2))
            whole = min(runs[f"whole_1t#{i}"][key] for i in (1, 2))
            print(f"2048^2 tiled ({args.tile} px) / whole image, 1 task at a time on 1 thread, "
                  f"best of 2, {key}: {tiled} / {whole} = {tiled / whole:.2f}")
        tiled, whole = runs["tiled"]["synth_s"], runs["whole"]["synth_s"]
        print(f"2048^2 tiled / whole image with the CLI defaults (one tile task per core): "
              f"{tiled} / {whole} s = {tiled / whole:.2f}")
    print("throughput (denoising, useful px x NCA steps / s): " + ", ".join(
        f"{name} {run['mpx_steps_per_s']}" for name, run in runs.items()))


if __name__ == "__main__":
    main()
