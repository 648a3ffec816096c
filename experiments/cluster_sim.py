"""A simulated GPU cluster on this machine: what the driver, the scheduler and the work
folder sustain as the number of workers grows.

N Dask workers (one thread each, an embedded cluster) run the engine's real diffusion
loop (`gigasynth.synth.denoise.denoise`: the driver, one task per tile or group, the
float16 state read with its halo and written per chunk in the work folder), but the
model is replaced by a sleep of `--sleep-ms` per tile per diffusion step (time.sleep
releases the GIL, so 32-64 simulated GPUs fit on 2 cores). The ideal rate is N tiles
per sleep; the report gives the measured rate against it and, per task, the CPU time
of the driver thread, Dask's event loop (scheduler and workers' messages) and the
task threads (the state I/O), so the limit is named, not guessed.

    python experiments/cluster_sim.py --workers 1 8 32 64 --sleep-ms 20 \\
        --block-steps 1 8 --per-task 1 4 --json docs/bench/cluster-sim.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from distributed import Client, LocalCluster

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_bench import thread_cpu_s, zero_step_checkpoint  # noqa: E402

from gigasynth.synth import SynthSpec, check_job  # noqa: E402
from gigasynth.synth import tasks as synth_tasks  # noqa: E402
from gigasynth.synth.denoise import denoise  # noqa: E402
from gigasynth.synth.state import WorkDir  # noqa: E402
from gigasynth.tiling import Tile  # noqa: E402


def sleeping_model(sleep_s: float) -> Callable[..., np.ndarray]:
    """A stand-in for `tasks._compute`: sleeps `sleep_s` per diffusion step of the block
    and returns the tile's stored x (zeros on the first pass): the I/O stays real."""

    def compute(
        ref: synth_tasks.ModelRef,
        exchange: synth_tasks.Exchange,
        tile: Tile,
        stored: torch.Tensor | None,
        device: torch.device,
    ) -> np.ndarray:
        time.sleep(sleep_s * len(exchange.timesteps))
        if stored is None:
            return np.zeros((3, tile.height, tile.width), np.float32)
        shrink = len(exchange.nca_steps) * len(exchange.timesteps)
        region = tile.read_window(shrink)
        return stored[0][(slice(None), *tile.crop(region, shrink))].numpy()

    return compute


def simulate(
    workers: int,
    block_steps: int,
    per_task: int,
    args: argparse.Namespace,
    checkpoint: str,
    root: Path,
) -> dict[str, Any]:
    """One denoise run on `workers` simulated GPUs, `per_task` tiles per task (read
    ahead, written behind); the rates and CPU shares."""
    spec = SynthSpec(checkpoint, args.size, args.size, seed=1, steps=args.steps, tile=args.tile)
    job = check_job(spec)
    work = WorkDir(root / f"w{workers}-k{block_steps}-p{per_task}")
    work.create()
    work.save(job.identity(), spec.to_dict(), 0)
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=False,
            dashboard_address="127.0.0.1:0",
            memory_limit=0,  # one process: a share of the RAM per worker would pause them
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        client.wait_for_workers(workers)
        before = thread_cpu_s()
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        denoise(job, work, client, 0, block_steps=block_steps, per_task=per_task)
        seconds = time.perf_counter() - start
        cpu = {k: v - before.get(k, 0.0) for k, v in thread_cpu_s().items()}
    work.remove()
    tasks = -(-len(job.plan) // per_task) * -(-args.steps // block_steps)
    tile_steps = len(job.plan) * args.steps
    ideal = workers / args.sleep_s  # tile-steps per second with no overhead at all
    return {
        "workers": workers,
        "block_steps": block_steps,
        "tiles_per_task": per_task,
        "tasks": tasks,
        "seconds": round(seconds, 2),
        "tile_steps_per_s": round(tile_steps / seconds, 1),
        "ideal_tile_steps_per_s": round(ideal, 1),
        "efficiency": round(tile_steps / seconds / ideal, 3),
        "tasks_per_s": round(tasks / seconds, 1),
        "cpu_ms_per_task": {k: round(v / tasks * 1e3, 2) for k, v in sorted(cpu.items())},
        "cpu_busy_of_2_cores": round(sum(cpu.values()) / seconds / (os.cpu_count() or 1), 2),
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--sleep-ms", type=float, default=20.0, help="model time per tile-step")
    parser.add_argument("--block-steps", type=int, nargs="+", default=[1])
    parser.add_argument(
        "--per-task", type=int, nargs="+", default=[1], help="tiles per task (in turn)"
    )
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    args.sleep_s = args.sleep_ms / 1e3
    torch.set_num_threads(1)
    synth_tasks._compute = sleeping_model(args.sleep_s)  # the workers are threads here
    root = Path(tempfile.mkdtemp(prefix="cluster-sim-"))
    try:
        checkpoint = zero_step_checkpoint(root / "zero-step")
        runs = [
            simulate(n, k, p, args, checkpoint, root)
            for k in args.block_steps
            for p in args.per_task
            for n in args.workers
        ]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report = {
        "device": f"{os.cpu_count()} CPU cores, simulated GPUs (sleep {args.sleep_ms:g} ms)",
        "size": args.size,
        "tile": args.tile,
        "steps": args.steps,
        "runs": runs,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
