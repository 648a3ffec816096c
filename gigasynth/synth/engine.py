"""synthesize(): a slide from a checkpoint, tiled on Dask, written as OME-Zarr (+ TIFF, PNG).

Order of events, each step safe to interrupt:
1. check everything that can be checked before any work (one-line errors), then the
   preflight: the disk the run needs against the disk free (gigasynth.synth.preflight);
2. open or resume the work folder `<out>.work/` (progress record; the state buffers
   there or in a work dir on another disk);
3. run the diffusion loop engine tile by engine tile (`SynthSpec.tile`, one state chunk
   each), saving every `save_every` steps (phase "denoise");
4. convert the final float16 state to uint8 level 0 (one task per Zarr chunk of the
   slide, `SLIDE_CHUNK`: "level0"), build the pyramid ("pyramid"), the OME-TIFF and the
   preview ("tiff") from a Zarr inside `<out>.work/`, on the output's filesystem;
5. rename that Zarr to `out` (the finished slide appears atomically), drop the work folder.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from distributed import Client

from gigasynth.cluster import connect, task_resources, task_threads
from gigasynth.errors import FieldError, GigasynthError
from gigasynth.io import (
    SlideMetadata,
    build_pyramid,
    create_ome_zarr,
    write_ome_tiff,
    write_preview,
)
from gigasynth.io.omezarr import SLIDE_CHUNK
from gigasynth.synth.blocks import task_shape
from gigasynth.synth.denoise import ProgressFn, StopFn, denoise
from gigasynth.synth.job import Job, check_block_steps, check_job
from gigasynth.synth.preflight import Needs, check_disk, estimate
from gigasynth.synth.spec import SynthDiskFull, SynthProgress, SynthResult, SynthSpec
from gigasynth.synth.state import WorkDir, discard_work, state_path, work_path
from gigasynth.synth.tasks import to_uint8_chunk

SLIDE_IN_WORK = "slide.ome.zarr"


def check_targets(out: Path, ome_tiff: Path | None, preview: Path | None, overwrite: bool) -> None:
    """Every file a run writes, checked before any work (the one check, for synthesize and
    synthesize_cascade): the right suffixes, and nothing there unless `overwrite`."""
    if not out.name.endswith(".zarr"):
        raise GigasynthError(f"the output must be a .ome.zarr folder, not {out}")
    if ome_tiff is not None and ome_tiff.suffix.lower() not in (".tif", ".tiff"):
        raise GigasynthError(f"the OME-TIFF must end in .ome.tif, not {ome_tiff}")
    if preview is not None and preview.suffix.lower() != ".png":
        raise GigasynthError(f"the preview must be a .png file, not {preview}")
    for path in (out, ome_tiff, preview):
        if path is not None and path.exists() and not overwrite:
            raise FieldError(f"{path} exists", "pass [overwrite] to replace it")


def _first_difference(saved: dict, now: dict) -> str:
    for key, value in now.items():
        if saved.get(key) != value:
            return f"{key} {saved.get(key)!r} there, {value!r} now"
    return "unknown fields"


def _open_work(
    out: Path, work_dir: Path | None, job: Job, resume: bool, overwrite: bool
) -> tuple[WorkDir, int | None]:
    """The work folder and the step to resume from (None: start afresh); writes nothing.

    A resumed run keeps its state where it started (the record names the folder),
    whatever work dir it is given now.
    """
    work = WorkDir(work_path(out), state_path(out, work_dir))
    if overwrite and not resume:
        return work, None
    record = work.load() if work.root.exists() else None
    if record is None:
        return work, None
    if not resume:
        raise FieldError(
            f"an unfinished run left its state in {work.root} (step {record['step']}/"
            f"{job.total_steps})",
            "pass [resume] to continue it or [overwrite] to discard it",
        )
    if record["job"] != job.identity():
        raise FieldError(
            f"the saved state in {work.root} is for another job "
            f"({_first_difference(record['job'], job.identity())})",
            "rerun with the same parameters, or with [overwrite] and without [resume] "
            "to start over",
        )
    work = work.recorded(record)
    step = int(record["step"])
    if step and not work.x_buffer(step).is_dir():
        raise FieldError(
            f"the state saved at step {step} is missing from {work.state} (was the work "
            "dir cleared?)",
            "start over with [overwrite] and without [resume]",
        )
    return work, step


def _begin(work: WorkDir, out: Path, job: Job, step: int | None) -> int:
    """Start afresh (step None: whatever an earlier run left goes) or prune to `step`."""
    if step is not None:
        work.prune({work.x_buffer(step)})
        return step
    discard_work(out)
    work.remove()
    work.create()
    if job.condition is not None:
        work.write_condition(job.condition)
    work.save(job.identity(), job.spec.to_dict(), 0)
    return 0


@contextmanager
def _client(client: Client | None, workers: int) -> Iterator[Client]:
    if client is not None:
        yield client
        return
    with connect(None, workers) as own:
        yield own


def _disk_full(exc: BaseException) -> OSError | None:
    """The ENOSPC error behind `exc`, if a full disk caused it."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _convert_level0(
    job: Job, client: Client, final: Path, slide: Path, mpp: float, provenance: dict
) -> None:
    """Level 0 of the slide from the final float state, one task per Zarr chunk of the
    slide (SLIDE_CHUNK, not the engine tile: the state's chunks are engine tiles)."""
    spec = job.spec
    meta = SlideMetadata(spec.width, spec.height, mpp, provenance, slide_name(spec))
    _, cy, cx = create_ome_zarr(slide, meta, SLIDE_CHUNK).chunks
    token = uuid.uuid4().hex[:12]
    futures = [
        client.submit(
            to_uint8_chunk,
            final,
            slide,
            slice(y, min(y + cy, spec.height)),
            slice(x, min(x + cx, spec.width)),
            key=f"gigasynth-uint8-{token}-{y}-{x}",
        )
        for y in range(0, spec.height, cy)
        for x in range(0, spec.width, cx)
    ]
    client.gather(futures)


def slide_name(spec: SynthSpec) -> str:
    return f"gigasynth synthetic slide (seed {spec.seed})"


def _move_into_place(slide: Path, out: Path, work: WorkDir) -> None:
    """Rename the finished Zarr to `out`, replacing an old one only after it is complete."""
    old = work.root / "replaced.ome.zarr"
    if out.exists():
        os.replace(out, old)
    os.replace(slide, out)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink(missing_ok=True)


def synthesize(
    spec: SynthSpec | Job,
    out: Path,
    *,
    ome_tiff: Path | None = None,
    preview: Path | None = None,
    client: Client | None = None,
    workers: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    work_dir: Path | None = None,
    preflight: bool = True,
    on_needs: Callable[[Needs], None] | None = None,
    block_steps: int | None = None,
) -> SynthResult:
    """Synthesise the slide `spec` describes into the OME-Zarr folder `out`.

    `spec` is checked by check_job (a JobError names the field at fault); a Job that
    check_job returned is run as it is (a front end that checked it already).
    Other bad input raises GigasynthError (one line) before any work; a cancel raises
    SynthCancelled and a full disk SynthDiskFull (a GigasynthError), both leaving `<out>.work/`
    resumable with resume=True.

    The state buffers go to `work_dir` (a folder every worker sees at the same path)
    instead of beside `out`. Before any work the preflight estimates the disk the run
    needs and refuses (GigasynthError) when a filesystem lacks it, unless `preflight`
    is False; `on_needs` receives the estimate either way.

    `block_steps`: diffusion steps per tile task (temporal blocking, I6; None: the
    default for the workers' device, `gigasynth.synth.blocks`, which also sizes the
    tasks). It changes no byte, so a run may resume with another one.
    """
    started = time.perf_counter()
    out = Path(out).absolute()  # tasks may run on other machines, in other working folders
    ome_tiff = None if ome_tiff is None else Path(ome_tiff)
    preview = None if preview is None else Path(preview)
    job = spec if isinstance(spec, Job) else check_job(spec)
    spec = job.spec
    check_targets(out, ome_tiff, preview, overwrite)
    if client is None and workers < 1:
        raise GigasynthError(f"workers must be at least 1, not {workers}")
    if block_steps is not None:
        check_block_steps(job, block_steps)
    work, resume_step = _open_work(out, work_dir, job, resume, overwrite)
    needs = estimate(job, spec.tiff_compression if ome_tiff is not None else None)
    if on_needs is not None:
        on_needs(needs)
    if preflight:
        held = work.allocated_bytes() if resume_step is not None else 0
        check_disk(needs, work.state, out, ome_tiff, held)
    out.parent.mkdir(parents=True, exist_ok=True)
    start_step = _begin(work, out, job, resume_step)
    provenance = {
        "checkpoint": spec.checkpoint,
        "checkpoint_sha256": job.ref.sha256,
        "model": job.config.kind,
        "seed": spec.seed,
        "sampler": spec.sampler,
        "steps": job.total_steps,
        "eta": spec.eta,
        "mpp_source": job.resolution.source,
    }
    if job.condition_sha256 is not None:
        provenance["condition_sha256"] = job.condition_sha256

    def report(phase: str, rate: float) -> None:
        if progress is not None:
            progress(SynthProgress(phase, job.total_steps, job.total_steps, 0, 0, rate, None))

    try:
        with _client(client, workers) as cl:
            resources = task_resources(cl)
            shape = task_shape(job, resources is not None, block_steps)
            final, rate = denoise(
                job,
                work,
                cl,
                start_step,
                block_steps=shape.block_steps,
                region=shape.region,
                per_task=shape.per_task,
                resources=resources,
                threads=task_threads(cl),
                progress=progress,
                should_stop=should_stop,
            )
            report("level0", rate)
            slide = work.root / SLIDE_IN_WORK
            shutil.rmtree(slide, ignore_errors=True)
            _convert_level0(job, cl, final, slide, job.resolution.mpp, provenance)
            report("pyramid", rate)
            build_pyramid(slide, client=cl)
        report("tiff", rate)
        if ome_tiff is not None:
            write_ome_tiff(slide, ome_tiff, spec.tiff_compression)
        if preview is not None:
            write_preview(slide, preview)
        _move_into_place(slide, out, work)
    except OSError as exc:
        full = _disk_full(exc)
        if full is None:
            raise
        saved = int((work.load() or {"step": 0})["step"])
        raise SynthDiskFull(
            f"disk full while writing {full.filename or work.root}: the state saved at step "
            f"{saved}/{job.total_steps} is kept in {work.root}",
            saved,
            job.total_steps,
            "free some space and rerun with [resume]",
        ) from None
    work.remove()
    report("done", rate)
    return SynthResult(out, ome_tiff, preview, job.ref.sha256, time.perf_counter() - started, rate)
