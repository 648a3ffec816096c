"""The shape of a tile task for the workers' device: how many diffusion steps (temporal
blocking, I6), how large a window, how many windows in turn.

A GPU wants large windows (the halo's share shrinks, the kernel runs at its large-image
rate) and its I/O beside its compute: its tasks compute regions of whole tiles up to
GPU_REGION px a side as one window, GPU_REGIONS_PER_TASK of them in turn, each read
while the one before computes. A CPU worker computes one engine tile and one diffusion
step per task: its compute dwarfs the plumbing (the cost model below gives K = 1 for
every bundled model on the development CPU, and `synthesize` ran at 95 % of the kernel's
rate so, BENCHMARKS.md), and small tasks keep both cores busy to the end.

A tile task that runs K diffusion steps pays its plumbing (reading the window, writing
the chunk, the driver's and the scheduler's share) once per K steps, but computes a
halo K times one step's reach wide: step k of the block runs on the tile plus
(K - k + 1) reaches on each side. Per diffusion step of one tile of T px the cost is

    plumbing(T) / K + (mean over the block of the window's pixels) * S * FLOP/px / rate

(the sampler's own arithmetic is paid every step whatever K, so it does not count)
and a GPU worker's default K is the one that minimises it, within what the tile allows
(`max_block_steps`). The rates are measured (BENCHMARKS.md, "Keeping GPU workers busy"):
the plumbing per task on the development CPU (host work: reading and writing the
state, the driver and the scheduler) and the H200 reference rate (DESIGN.md section 7).
"""

from __future__ import annotations

from dataclasses import dataclass

from gigasynth.models import macs_per_pixel
from gigasynth.synth.job import Job, max_block_steps

# The plumbing a block saves, per tile task, in CPU time (experiments/pipeline_bench.py,
# a model of 0 NCA steps, 512 px tiles, K = 1, 4, 8, docs/bench/pipeline-blocks.json):
# the driver's and the event loop's 3.6 ms per task whatever the tile, and 7.7 ms of the
# task's own reading and writing per 512^2 tile (its 13.3 ms at K = 1 less the 5.6 ms
# that each further step of a block adds: the sampler's arithmetic, paid every step).
PLUMBING_TASK_S = 0.0036
PLUMBING_PX_S = 7.7e-3 / 512**2
# Effective FLOP/s of the NCA update on a GPU: the H200's measured reference
# (torch.compile, bf16, 2048^2: 236 Mpx-steps/s x 2 x 207,152 MACs).
GPU_FLOPS = 236e6 * 2 * 207152
# Beyond this many steps a block saves under 1/16 of the plumbing it had left.
MOST_DEFAULT = 16


GPU_REGION = 2048  # px: the large-image shape of the GPU timings
GPU_REGIONS_PER_TASK = 2  # the second is read while the first computes


@dataclass(frozen=True)
class TaskShape:
    """Diffusion steps per task, the side of the region one window covers (0: one engine
    tile) and the regions a task computes in turn."""

    block_steps: int
    region: int
    per_task: int


def task_shape(job: Job, gpu: bool, block_steps: int | None = None) -> TaskShape:
    """The shape for workers with (`gpu`) or without a GPU; `block_steps` as given
    (checked by the caller), else 1 on CPU and the cost model's on a GPU."""
    if not gpu:
        return TaskShape(1 if block_steps is None else block_steps, 0, 1)
    region = GPU_REGION if job.spec.tile else 0
    if block_steps is None:
        block_steps = default_block_steps(job, region)
    return TaskShape(block_steps, region, GPU_REGIONS_PER_TASK)


def _side(job: Job, region: int) -> int:
    """The side of a task's window before its halo."""
    if not job.spec.tile:
        return max(job.spec.width, job.spec.height)
    return max(job.spec.tile, region // job.spec.tile * job.spec.tile)


def window_factor(side: int, reach: int, block_steps: int) -> float:
    """Pixels computed per useful pixel in a block of `block_steps` steps on a `side` px
    window: step k of the block runs on the window grown by (K - k + 1) reaches a side."""
    total = sum((side + 2 * k * reach) ** 2 for k in range(1, block_steps + 1))
    return total / block_steps / side**2


def step_cost_s(job: Job, block_steps: int, region: int = 0) -> float:
    """Modelled seconds of one diffusion step of one full region (0: a tile) on a GPU
    worker in blocks of `block_steps`."""
    side = _side(job, region)
    window = side * side * window_factor(side, job.config.halo, block_steps)
    flop = window * job.config.nca_steps * 2 * macs_per_pixel(job.config)
    plumbing = PLUMBING_TASK_S + PLUMBING_PX_S * side * side
    return plumbing / block_steps + flop / GPU_FLOPS


def default_block_steps(job: Job, region: int = 0) -> int:
    """The K of least modelled cost per diffusion step on a GPU worker; 1 where the job
    allows no more."""
    most = min(max_block_steps(job), MOST_DEFAULT, job.total_steps)
    if most <= 1:
        return 1
    return min(range(1, most + 1), key=lambda k: step_cost_s(job, k, region))
