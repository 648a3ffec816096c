"""The default block of diffusion steps per tile task (temporal blocking, I6), from rates.

A tile task that runs K diffusion steps pays its plumbing (reading the window, writing
the chunk, the driver's and the scheduler's share) once per K steps, but computes a
halo K times one step's reach wide: step k of the block runs on the tile plus
(K - k + 1) reaches on each side. Per diffusion step of one tile of T px the cost is

    plumbing(T) / K + (mean over the block of the window's pixels) * S * FLOP/px / rate

(the sampler's own arithmetic is paid every step whatever K, so it does not count)
and the default K is the one that minimises it, within what the tile allows
(`max_block_steps`). The rates are measured (BENCHMARKS.md, "Engine efficiency"):
the plumbing per task on the development CPU (it is host work: reading and writing
the state, the sampler's elementwise step), the model's effective FLOP/s on that CPU
and, for a GPU worker, the H200 reference rate (DESIGN.md section 7).
"""

from __future__ import annotations

from gigasynth.config import PRESETS
from gigasynth.models import macs_per_pixel
from gigasynth.synth.job import Job, max_block_steps

# The plumbing a block saves, per tile task (experiments/pipeline_bench.py, a model of 0
# NCA steps, 512 px tiles, 2 workers, 2026-12-08): a task took 40 ms at K = 1 and 80 ms
# at K = 4, so 13 ms per step of sampler arithmetic (paid every step, K or not) and
# 27 ms of reading, writing and scheduling per task; about 4 ms of it per task whatever
# the tile (the driver's and the event loop's CPU), the rest in proportion to its pixels.
PLUMBING_TASK_S = 0.004
PLUMBING_PX_S = 0.9e-7
# Effective FLOP/s of the NCA update, one worker: the tiny preset at 512^2 on one thread
# of the development CPU (1.64 Mpx-steps/s, BENCHMARKS.md), and the H200's measured
# reference (torch.compile, bf16, 2048^2: 236 Mpx-steps/s x 2 x 207,152 MACs).
CPU_FLOPS = 1.64e6 * 2 * macs_per_pixel(PRESETS["tiny"])
GPU_FLOPS = 236e6 * 2 * 207152
# Beyond this many steps a block saves under 1/16 of the plumbing it had left.
MOST_DEFAULT = 16


def step_cost_s(job: Job, block_steps: int, gpu: bool) -> float:
    """Modelled seconds of one diffusion step of one full tile in blocks of `block_steps`."""
    side = job.spec.tile or max(job.spec.width, job.spec.height)
    reach = job.config.halo
    window = sum((side + 2 * k * reach) ** 2 for k in range(1, block_steps + 1)) / block_steps
    flop = window * job.config.nca_steps * 2 * macs_per_pixel(job.config)
    plumbing = PLUMBING_TASK_S + PLUMBING_PX_S * side * side
    return plumbing / block_steps + flop / (GPU_FLOPS if gpu else CPU_FLOPS)


def default_block_steps(job: Job, gpu: bool) -> int:
    """The K of least modelled cost per diffusion step for workers with (`gpu`) or
    without a GPU; 1 where the job allows no more."""
    most = min(max_block_steps(job), MOST_DEFAULT, job.total_steps)
    if most <= 1:
        return 1
    return min(range(1, most + 1), key=lambda k: step_cost_s(job, k, gpu))
