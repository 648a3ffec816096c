"""The driver of the diffusion loop: one future per tile per exchange, a bounded graph.

Per exchange the driver submits one task per tile and waits for all of them before
the next exchange: the Dask graph never holds more than one exchange, and the state
between exchanges lives in Zarr buffers, not in worker memory (Dask is the compute
layer, the work folder the source of truth).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

from distributed import Client, as_completed

from gigasynth.synth.job import Job
from gigasynth.synth.spec import SynthCancelled, SynthProgress
from gigasynth.synth.state import WorkDir
from gigasynth.synth.tasks import Exchange, denoise_tiles
from gigasynth.tiling import Tile

ProgressFn = Callable[[SynthProgress], None]
StopFn = Callable[[], bool]


class RateMeter:
    """Throughput (useful Mpx-steps/s) and ETA of the work done in this run.

    The run's first diffusion step also pays for starting up (workers loading the model,
    first calls), and a tile counts only once it ends while every worker has one under
    way: an ETA from the first tiles came out several times too long. So the steady rate
    is measured from the end of the run's first step to the end of its latest one, and
    there is no ETA until two steps have ended.
    """

    def __init__(self, total_work: float, done_before: float) -> None:
        self.start = time.perf_counter()
        self.total = total_work
        self.base = done_before
        self.done = done_before
        self._first_step: tuple[float, float] | None = None  # (time, work done)
        self._last_step: tuple[float, float] | None = None

    def add(self, work: float) -> None:
        self.done += work

    def step_ended(self) -> None:
        """Mark the end of a diffusion step (a point of the steady rate)."""
        mark = (time.perf_counter(), self.done)
        if self._first_step is None:
            self._first_step = mark
        else:
            self._last_step = mark

    @property
    def rate(self) -> float:
        """The average over this run so far (start-up included)."""
        elapsed = time.perf_counter() - self.start
        return (self.done - self.base) / elapsed / 1e6 if elapsed > 0 else 0.0

    @property
    def steady_rate(self) -> float | None:
        """The rate between step ends after the first; None until two steps have ended."""
        if self._first_step is None or self._last_step is None:
            return None
        (t0, w0), (t1, w1) = self._first_step, self._last_step
        return (w1 - w0) / (t1 - t0) / 1e6 if t1 > t0 and w1 > w0 else None

    @property
    def eta_s(self) -> float | None:
        rate = self.steady_rate
        return (self.total - self.done) / (rate * 1e6) if rate else None


def _run_exchange(
    client: Client,
    job: Job,
    exchange: Exchange,
    tasks: list[tuple[Tile, ...]],
    token: str,
    resources: dict[str, int] | None,
    threads: int | None,
    on_task: Callable[[int, int], None],
    should_stop: StopFn | None,
) -> bool:
    """Submit one task per group of regions and wait for all; False when should_stop()
    turned True. `on_task(tiles, pixels)` follows each task's end.

    On a stop or a failure the tasks not yet finished are cancelled. A task that ran on
    a worker that died (even after it finished: its result was lost) runs again on
    another worker and writes the same bytes to the same chunks (I5); the exchange ends
    only when no such re-run is left, so none of its writes lands after the next
    exchange started reading.
    """
    n = len(tasks)
    # One map, one message to the scheduler for the whole exchange (a submit per task
    # cost the scheduler a graph update each).
    futures = client.map(
        denoise_tiles,
        [job.ref] * n,
        [exchange] * n,
        tasks,
        [threads] * n,
        key=[f"gigasynth-{token}-{i}" for i in range(n)],
        resources=resources,
        pure=False,
    )
    tiles = {
        f.key: sum(job.plan.tiles_in(r) for r in group)
        for f, group in zip(futures, tasks, strict=True)
    }
    try:
        for future in as_completed(futures, loop=client.loop):
            on_task(tiles[future.key], future.result())
            if should_stop is not None and should_stop():
                return False
        rerun = [f for f in futures if not f.done()]
        if rerun:
            client.gather(rerun)
        return True
    finally:
        client.cancel([f for f in futures if not f.done()])


def task_groups(job: Job, region: int, per_task: int) -> list[tuple[Tile, ...]]:
    """The tasks of one exchange: regions of whole tiles up to `region` px a side (the
    engine tile: one tile each), `per_task` of them per task, row-major."""
    regions = list(job.plan.regions(region or job.spec.tile))
    return [tuple(regions[i : i + per_task]) for i in range(0, len(regions), per_task)]


def denoise(
    job: Job,
    work: WorkDir,
    client: Client,
    start_step: int,
    *,
    block_steps: int = 1,
    region: int = 0,
    per_task: int = 1,
    resources: dict[str, int] | None = None,
    threads: int | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> tuple[Path, float]:
    """Run diffusion steps start_step..end: (buffer holding the final x_0, Mpx-steps/s).

    One task runs a block of `block_steps` diffusion steps (checked by
    check_block_steps; temporal blocking, I6) and the state is written once per block.
    A task computes `per_task` regions of whole tiles up to `region` px a side (0: one
    tile each), reading the next one while it computes (`task_groups`, `denoise_tiles`).
    Saves progress at the end of a block once `save_every` steps have passed since the
    last save, and after the last step; so a run killed inside a block resumes from the
    block's start (or an earlier save). A cancel raises SynthCancelled; the saved state
    stays as it was (resumable). Buffers go as soon as nothing reads them: with a save
    every block (the default) the folder holds two x buffers at most, the block's source
    and its target (plus, with halo exchanges, the cell states of two consecutive
    exchanges); a longer `save_every` keeps the saved step's buffer as a third.
    """
    spec, plan = job.spec, job.plan
    run = uuid.uuid4().hex[:12]
    per_step = len(plan) * len(job.exchanges)
    meter = RateMeter(job.work_per_step * job.total_steps, job.work_per_step * start_step)
    saved = start_step
    tiles_done = 0
    whole_step = len(job.exchanges) == 1
    tasks = task_groups(job, region, per_task)

    def report(step: int, block: int = 1) -> None:
        if progress is not None:
            progress(
                SynthProgress(
                    "denoise",
                    step,
                    job.total_steps,
                    tiles_done,
                    per_step,
                    meter.steady_rate or meter.rate,
                    meter.eta_s,
                    block,
                )
            )

    def cancelled(step: int) -> SynthCancelled:
        return SynthCancelled(
            f"cancelled at diffusion step {step}/{job.total_steps}; "
            f"state saved at step {saved} in {work.root}"
        )

    report(start_step)
    step = start_step
    while step < job.total_steps:
        end = min(step + block_steps, job.total_steps) if whole_step else step + 1
        source = work.x_buffer(step) if step else None
        tiles_done = 0
        for j, nca_steps in enumerate(job.exchanges):
            final = j == len(job.exchanges) - 1
            if should_stop is not None and should_stop():
                raise cancelled(step)
            target = work.x_buffer(end) if final else work.cells_buffer(step + 1, j)
            channels = 3 if final else job.config.channels
            work.create_buffer(target, channels, spec.height, spec.width, plan.chunk)
            exchange = Exchange(
                job.timesteps[step:end],
                nca_steps,
                source,
                j > 0,
                target,
                final,
                whole_step,
                None if job.condition is None else work.condition,
            )

            def on_task(
                tiles: int, pixels: int, n: int = len(nca_steps), s: int = step, e: int = end
            ) -> None:
                nonlocal tiles_done
                tiles_done += tiles
                meter.add(pixels * n * (e - s))
                report(s, e - s)

            token = f"{run}-{step}-{j}"
            if not _run_exchange(
                client, job, exchange, tasks, token, resources, threads, on_task, should_stop
            ):
                raise cancelled(step)
            if j > 0:  # a full cell state is read by the next exchange only
                assert source is not None  # the previous exchange's target
                work.drop(source)
            source = target
        meter.step_ended()
        if end - saved >= spec.save_every or end == job.total_steps:
            work.save(job.identity(), spec.to_dict(), end)
            saved = end
        work.prune({work.x_buffer(saved), work.x_buffer(end)})
        step = end
    return work.x_buffer(job.total_steps), meter.rate
