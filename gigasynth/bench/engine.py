"""Engine efficiency: `synthesize`'s useful rate against the model's own rate, one run.

The kernel's rate (the mean of rounds before and after the run) is the model's
denoiser (all S NCA updates and the read-out) on tile-sized inputs, in as many threads
at once as the engine runs tasks, each with the torch threads a task gets: the most the
engine could reach if tiles cost nothing else. The engine's rate is that of a real
tiled `synthesize` (Dask, the work folder, the halo) of a slide of several tiles,
counted in useful pixel-NCA-steps (halo recomputation not counted), from the first
diffusion step's end to the last's (the steady rate of its progress reports, start-up
excluded). Their ratio is the engine's
efficiency; the halo's share follows from the tile (`halo_factor`), the rest is
plumbing. On a shared machine the kernel's rounds and the run see different loads, so
the report also gives a figure taken within the run alone: the share of the workers'
time spent inside tile tasks (Dask's task stream), what the driver and the scheduler
leave to the tasks.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from distributed import get_task_stream

from gigasynth.bench.suite import halo_factor
from gigasynth.checkpoint import load_checkpoint
from gigasynth.cluster import connect, task_threads
from gigasynth.geometry import Window
from gigasynth.images import write_png
from gigasynth.keyed import Stream, key_words, keyed_uniform
from gigasynth.sampling.condition import model_condition
from gigasynth.synth import SynthProgress, SynthSpec, synthesize

ENGINE_STEPS = 3  # DDIM steps: the first is start-up, the steady rate needs two more


@dataclass(frozen=True)
class EngineSizes:
    """The slide and tile of an engine run on one kind of device."""

    size: int
    tile: int


ENGINE_SIZES = {
    "cuda": EngineSizes(8192, 2048),
    # Two shared cores: 4 tiles of 768 px (2 per worker), 1.03x for the halo at S = 12.
    "cpu": EngineSizes(1536, 768),
    "quick": EngineSizes(96, 48),
}


def _condition_png(folder: Path, side: int, seed: int) -> Path:
    """A keyed-noise RGB image as a conditioned stage's input (any pixels will do: the
    cost does not depend on them)."""
    rgb = keyed_uniform(key_words(seed, Stream.CONDITION_NOISE, 0, 0), 3, side, side)[0]
    path = folder / "condition.png"
    write_png(path, np.ascontiguousarray((rgb * 255).byte().permute(1, 2, 0).numpy()))
    return path


def kernel_rate(checkpoint: str, tile: int, threads: int, torch_threads: int, reps: int) -> float:
    """Useful Mpx-NCA-steps/s of the model's denoiser on `tile`^2 inputs, `threads` calls
    at once (each with `torch_threads`), over `reps` rounds after a warm-up (their mean
    time: the engine's rate is a mean too, and on a shared machine a best-of would
    flatter the kernel)."""
    ckpt = load_checkpoint(checkpoint)
    model, config = ckpt.model.eval(), ckpt.config
    x = torch.zeros(1, 3, tile, tile)
    cond = None
    if config.is_conditioned:
        f = config.condition_downsample
        low = torch.zeros(1, config.condition_channels, tile // f, tile // f)
        cond = model_condition(
            config, low, [0], tile, tile, Window(), Window(), (tile // f, tile // f)
        )
    extra = {} if cond is None else {"condition": cond}

    def one() -> None:
        torch.set_num_threads(torch_threads)
        with torch.no_grad():
            model(x, [config.timesteps - 1], [0], **extra)

    def round_s() -> float:
        workers = [threading.Thread(target=one) for _ in range(threads)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return time.perf_counter() - start

    round_s()  # warm-up: first calls, allocations
    mean = sum(round_s() for _ in range(reps)) / reps
    return threads * tile * tile * config.nca_steps / mean / 1e6


def engine_efficiency(
    checkpoint: str,
    device_kind: str,
    workers: int,
    block_steps: int | None = None,
    reps: int = 2,
) -> dict[str, Any]:
    """The engine's and the kernel's rates for `checkpoint` in the same run, and the
    plumbing's share (ENGINE_SIZES[device_kind]: "cpu", "cuda" or "quick")."""
    sizes = ENGINE_SIZES[device_kind]
    config = load_checkpoint(checkpoint).config
    reports: list[SynthProgress] = []
    with (
        tempfile.TemporaryDirectory(prefix="gigasynth-bench-") as tmp,
        connect(None, workers) as client,
    ):
        folder = Path(tmp)
        condition = None
        if config.is_conditioned:
            side = sizes.size // config.condition_downsample
            condition = str(_condition_png(folder, side, 0))
        spec = SynthSpec(
            checkpoint,
            sizes.size,
            sizes.size,
            seed=0,
            steps=ENGINE_STEPS,
            tile=sizes.tile,
            condition=condition,
        )
        torch_threads = task_threads(client) or torch.get_num_threads()
        kernel_before = kernel_rate(checkpoint, sizes.tile, workers, torch_threads, reps)
        start = time.perf_counter()
        with get_task_stream(client) as stream:
            synthesize(
                spec,
                folder / "slide.ome.zarr",
                client=client,
                progress=reports.append,
                preflight=False,
                block_steps=block_steps,
            )
        seconds = time.perf_counter() - start
        kernel_after = kernel_rate(checkpoint, sizes.tile, workers, torch_threads, reps)
    denoising = [r for r in reports if r.phase == "denoise"]
    tile_tasks = [
        s["stop"] - s["start"]
        for t in stream.data
        if str(t.get("key", "")).startswith("gigasynth-") and "uint8" not in str(t.get("key"))
        for s in t["startstops"]
        if s["action"] == "compute"
    ]
    spans = [
        s[k]
        for t in stream.data
        if str(t.get("key", "")).startswith("gigasynth-") and "uint8" not in str(t.get("key"))
        for s in t["startstops"]
        if s["action"] == "compute"
        for k in ("start", "stop")
    ]
    busy = sum(tile_tasks) / (workers * (max(spans) - min(spans))) if spans else 0.0
    engine = denoising[-1].mpx_steps_per_s
    kernel = (kernel_before + kernel_after) / 2
    halo = halo_factor(config, sizes.tile)
    return {
        "checkpoint": checkpoint,
        "size": sizes.size,
        "tile": sizes.tile,
        "diffusion_steps": ENGINE_STEPS,
        "block_steps": block_steps,
        "workers": workers,
        "torch_threads_per_task": torch_threads,
        "kernel_mpx_steps_per_s": kernel,
        "kernel_before_after": [kernel_before, kernel_after],
        "engine_mpx_steps_per_s": engine,
        "efficiency": engine / kernel,
        "halo_factor": halo,
        "halo_share": 1 - 1 / halo,
        "plumbing_share": max(0.0, 1 / halo - engine / kernel),
        "synthesize_seconds": seconds,
        "workers_busy_in_tile_tasks": busy,
    }
