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
        return str(save_checkpoint(tmp / "tiny", build_model(preset("tiny")), preset("tiny")))


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
            "synth_s": float(seconds.group(1)), "peak_rss_mib": round(usage.ru_maxrss / 1024),
            "mpx_steps_per_s": float(rate.group(1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--steps", type=int, default=1, help="DDIM steps per run")
    parser.add_argument("--tile", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp_name:
        tmp = Path(tmp_name)
        checkpoint = args.checkpoint or default_checkpoint(tmp)
        runs = {}
        for name, size, tile, workers, one_thread in (
                ("small", 1024, args.tile, None, False), ("large", 4096, args.tile, None, False),
                ("tiled_1t", 2048, args.tile, 1, True), ("whole_1t", 2048, 0, 1, True),
                ("tiled", 2048, args.tile, None, False), ("whole", 2048, 0, None, False)):
            runs[name] = synth(checkpoint, size, tile, args.steps, tmp, workers, one_thread)
            print(json.dumps(runs[name]), flush=True)
    r = runs
    print(f"checkpoint {checkpoint}, DDIM {args.steps} steps, {os.cpu_count()} CPUs")
    print(f"peak RSS 4096^2 / 1024^2 (tiles {args.tile}): {r['large']['peak_rss_mib']} / "
          f"{r['small']['peak_rss_mib']} MiB = "
          f"{r['large']['peak_rss_mib'] / r['small']['peak_rss_mib']:.2f}")
    for suffix, what in (("_1t", "1 worker, 1 thread each"), ("", "CLI default workers")):
        tiled, whole = r["tiled" + suffix], r["whole" + suffix]
        print(f"2048^2 tiled ({args.tile} px) / whole-image synth time, {what}: "
              f"{tiled['synth_s']} / {whole['synth_s']} s = "
              f"{tiled['synth_s'] / whole['synth_s']:.2f}")
    print("throughput (denoising, useful px x NCA steps / s): " + ", ".join(
        f"{name} {run['mpx_steps_per_s']}" for name, run in r.items()))


if __name__ == "__main__":
    main()
