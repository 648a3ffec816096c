"""The job runner: worker threads in the server process that run queued jobs on one Dask client.

Jobs flow queued -> running -> succeeded | failed | cancelled, each change committed to
the store first. A cancel sets the job's stop flag; the engine raises SynthCancelled at
its next check and keeps its work folder, so the partial state stays until the job is
deleted, or until a retry (`requeue`) resumes the job from it. On start, jobs left
queued or running by a crash are queued again and resume from their last saved step; a
graceful stop puts running jobs back to queued the same way.

A store that cannot be written (a full disk) never strands a job: progress writes are
best effort, the final state change is tried again a few times and then kept in memory
(`_unrecorded`) and written by a background thread as soon as the store takes it; such
a job holds no quota slot, and a cancel or delete writes its end first. If the server
stops before that, the job is still `running` in the store and the next start resumes
it like any job a crash interrupted. Errors a client sees name no server path.
"""

from __future__ import annotations

import errno
import logging
import queue
import re
import threading
import time
from contextlib import ExitStack
from typing import Any

from distributed import Client

from gigasynth import __version__
from gigasynth.cascade.synth import CascadeProgress, synthesize_cascade
from gigasynth.cluster import connect, default_workers
from gigasynth.errors import FieldError, GigasynthError
from gigasynth.synth import (
    SynthCancelled,
    SynthDiskFull,
    SynthProgress,
    SynthResult,
    synthesize,
)
from gigasynth.synth.preflight import DiskShortage, gb
from gigasynth_service.catalog import CascadeEntry, ModelCatalog
from gigasynth_service.config import ServiceConfig
from gigasynth_service.paths import JobPaths
from gigasynth_service.schemas import JobRequest
from gigasynth_service.spec import cascade_settings, synth_spec
from gigasynth_service.store import JobRecord, JobStore, StoreUnavailable

log = logging.getLogger("gigasynth.service")

_ABSOLUTE_PATH = re.compile(r"(?<![\w.:])/(?:[^\s'\",;()/]+/)*([^\s'\",;()/]*)")


# The library's fields (gigasynth.errors.FieldError) a request calls otherwise.
_REQUEST_WORDS = {"size": "width and height", "checkpoint": "model"}


def request_words(exc: GigasynthError) -> str:
    """An engine error in the request's words: a FieldError's fields as the request
    names them, and its advice only where the request can follow it (it names nothing
    a request cannot set, such as resume, overwrite or work_dir)."""
    if not isinstance(exc, FieldError):
        return str(exc)
    settable = set(JobRequest.model_fields) | set(_REQUEST_WORDS)
    followable = set(exc.advice_fields) <= settable
    return exc.render(lambda field: _REQUEST_WORDS.get(field, field), advice=followable)


def public_error(message: str) -> str:
    """An engine message (in the request's words, `request_words`) as a client may see
    it: paths cut to their last part."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "a server folder", message)


def disk_full_error(saved_step: int | None, total_steps: int | None) -> str:
    """What a client sees of a job a full disk stopped: no path, and how to continue."""
    kept = (
        "its saved state is kept"
        if saved_step is None
        else f"the state saved at diffusion step {saved_step} of {total_steps} is kept"
    )
    return (
        f"the server ran out of disk space; {kept}: retry the job "
        "(POST its retry endpoint) to continue from there"
    )


def progress_record(
    p: SynthProgress, start_step: int, stage: tuple[int, int] | None = None
) -> dict[str, Any]:
    """What the store keeps of a progress report, with an overall fraction done and the
    step this attempt started from (above 0: resumed from a saved state). A cascade's
    report carries its `stage` (k, of n): the fraction counts each stage as 1/n."""
    if p.phase == "denoise" and p.total_steps:
        fraction = min(0.99, p.steps_done / p.total_steps)
    else:
        fraction = 1.0 if p.phase == "done" else 0.99
    staged: dict[str, Any] = {}
    if stage is not None:
        k, n = stage
        fraction = min(0.99, (k - 1 + fraction) / n)
        staged = {"stage": k, "stages": n, "stage_label": f"stage {k} of {n}"}
    return {
        **staged,
        "phase": p.phase,
        "step": p.step,
        "start_step": start_step,
        "total_steps": p.total_steps,
        "tiles_done": p.tiles_done,
        "tiles_total": p.tiles_total,
        "mpx_steps_per_s": p.mpx_steps_per_s,
        "eta_s": p.eta_s,
        "fraction": round(fraction, 4),
    }


class ProgressWriter:
    """The engine's progress callback: writes to the store at most every `interval_s`
    (and at every change of phase or cascade stage)."""

    def __init__(self, store: JobStore, job_id: str, interval_s: float) -> None:
        self.store = store
        self.job_id = job_id
        self.interval_s = interval_s
        self._last_write = 0.0
        self._last: dict[str, Any] | None = None
        self._start_step: int | None = None
        self._stage: tuple[int, int] | None = None

    def __call__(self, p: SynthProgress | CascadeProgress) -> None:
        stage = None
        if isinstance(p, CascadeProgress):
            stage, p = (p.stage, p.stages), p.progress
            if stage != self._stage:  # each stage's engine reports where it starts first
                self._stage, self._start_step = stage, None
        if self._start_step is None:  # the engine reports where it starts first
            self._start_step = p.step
        record = progress_record(p, self._start_step, stage)
        now = time.monotonic()
        changed = self._last is None or any(
            self._last.get(key) != record.get(key) for key in ("phase", "stage")
        )
        self._last = record
        if changed or now - self._last_write >= self.interval_s:
            self._last_write = now
            self._write(record)

    def finish(self) -> None:
        """Record the final state of a finished run."""
        done = dict(
            self._last
            or {
                "step": 0,
                "start_step": 0,
                "total_steps": 0,
                "tiles_done": 0,
                "tiles_total": 0,
                "mpx_steps_per_s": 0.0,
            }
        )
        done.update(phase="done", fraction=1.0, eta_s=0.0)
        self._write(done)

    def _write(self, record: dict[str, Any]) -> None:
        """Progress is advisory: a store that cannot take it must not stop the job."""
        try:
            self.store.set_progress(self.job_id, record)
        except StoreUnavailable as exc:
            log.warning("job %s: progress not recorded (%s)", self.job_id, exc)


class JobRunner:
    """Runs jobs from a queue in `config.runner_threads` threads, sharing one Dask client."""

    # Waits between tries of a job's final state change before it is left to the
    # background thread, which tries again every `settle_interval_s`.
    record_retry_s: tuple[float, ...] = (0.1, 0.5, 2.0)
    settle_interval_s: float = 2.0

    def __init__(self, store: JobStore, config: ServiceConfig, catalog: ModelCatalog) -> None:
        self.store = store
        self.config = config
        self.catalog = catalog
        self._queue: queue.Queue[str | None] = queue.Queue()
        # Guards state transitions, _stop_flags, _unrecorded and _unclaimed.
        self._lock = threading.Lock()
        self._stop_flags: dict[str, threading.Event] = {}
        # Jobs whose run ended but whose end the store refused: id -> (token, state, fields).
        self._unrecorded: dict[str, tuple[str, str, dict[str, Any]]] = {}
        self._unclaimed: set[str] = set()  # queued jobs the store refused to mark running
        self._shutting_down = threading.Event()
        self._threads: list[threading.Thread] = []
        self._client_lock = threading.Lock()
        self._client: Client | None = None
        self._client_stack = ExitStack()

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> list[str]:
        """Re-queue what a previous process left unfinished and start the threads.

        Returns the ids queued again.
        """
        requeued = []
        for job in self.store.unfinished():
            if job.cancel_requested:
                self.store.set_state(job.id, "cancelled", message="cancelled before a restart")
                continue
            if job.state == "running":
                self.store.set_state(job.id, "queued", message="re-queued after a restart")
            requeued.append(job.id)
            self._queue.put(job.id)
        for i in range(self.config.runner_threads):
            thread = threading.Thread(target=self._work, name=f"gigasynth-runner-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        settler = threading.Thread(target=self._settle_loop, name="gigasynth-settle", daemon=True)
        settler.start()
        self._threads.append(settler)
        return requeued

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop running jobs at their next check (they stay resumable) and close the client."""
        self._shutting_down.set()
        with self._lock:
            for flag in self._stop_flags.values():
                flag.set()
        for _ in range(self.config.runner_threads):
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)
        self.settle()
        with self._client_lock:
            self._client_stack.close()
            self._client = None

    # --- requests from the API --------------------------------------------------------

    def enqueue(self, job_id: str) -> None:
        self._queue.put(job_id)

    def cancel(self, job_id: str) -> None:
        """Cancel a queued job at once; ask a running one to stop at its next check.

        A job whose run already ended gets that end recorded instead (StoreUnavailable
        while the store cannot take it); one recorded as running that no thread here
        runs (its run was lost) is cancelled at once.
        """
        with self._lock:
            if job_id in self._unrecorded:
                self._record_unrecorded(job_id)
                return
            job = self.store.job(job_id)
            if job is None or not job.active:
                return
            self.store.request_cancel(job_id)
            if job.state == "queued":
                self.store.set_state(job_id, "cancelled", message="cancelled while queued")
            elif job_id in self._stop_flags:
                self._stop_flags[job_id].set()
            else:
                self.store.set_state(
                    job_id, "cancelled", message="cancelled; no run of it was in progress"
                )

    def is_running_here(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._stop_flags

    def unrecorded(self) -> set[str]:
        """Ids of jobs that ended here but whose end the store has not taken yet."""
        with self._lock:
            return set(self._unrecorded)

    def settle(self) -> None:
        """Write the ends the store refused before, and queue again the jobs it refused
        to mark running; whatever it still refuses waits for the next call."""
        with self._lock:
            for job_id in list(self._unrecorded):
                try:
                    self._record_unrecorded(job_id)
                except StoreUnavailable:
                    break
            unclaimed, self._unclaimed = self._unclaimed, set()
        for job_id in unclaimed:
            self._queue.put(job_id)

    # --- the worker threads -------------------------------------------------------------

    def _dask_client(self) -> Client:
        with self._client_lock:
            if self._client is None:
                self._client = self._client_stack.enter_context(
                    connect(
                        self.config.scheduler, workers=self.config.dask_workers or default_workers()
                    )
                )
            return self._client

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._shutting_down.is_set():
                return
            try:
                self._run(job_id)
            except Exception:  # a bug here must not kill the thread and strand the queue
                log.exception("runner failed on job %s", job_id)

    def _settle_loop(self) -> None:
        while not self._shutting_down.wait(self.settle_interval_s):
            try:
                self.settle()
            except Exception:
                log.exception("settling unrecorded job states failed")

    def _claim(self, job_id: str) -> tuple[JobRecord, threading.Event] | None:
        """Mark a queued job running and give it a stop flag; None if it is not queued
        (or the store refused the change: then it is queued again later)."""
        with self._lock:
            job = self.store.job(job_id)
            if job is None or job.state != "queued":
                return None
            try:
                self.store.set_state(job_id, "running")
            except StoreUnavailable as exc:
                log.error("job %s not started: %s", job_id, exc)
                self._unclaimed.add(job_id)
                return None
            flag = threading.Event()
            self._stop_flags[job_id] = flag
            return job, flag

    def _run(self, job_id: str) -> None:
        claimed = self._claim(job_id)
        if claimed is None:
            return
        job, stop = claimed
        state, fields = "failed", {"error": "internal error"}
        try:
            state, fields = self._execute(job, stop)
        finally:
            recorded = self._record(job_id, state, fields)
            with self._lock:  # the job leaves _stop_flags only once its end is known
                self._stop_flags.pop(job_id, None)
                if not recorded:
                    self._unrecorded[job_id] = (job.token_id, state, fields)

    def _record(self, job_id: str, state: str, fields: dict[str, Any]) -> bool:
        """Write a run's end, trying again a few times; False if the store kept refusing."""
        for wait in (*self.record_retry_s, None):
            try:
                self.store.set_state(job_id, state, **fields)
                return True
            except StoreUnavailable as exc:
                log.error("job %s ended %s, not recorded yet: %s", job_id, state, exc)
                if wait is None or self._shutting_down.is_set():
                    return False
                time.sleep(wait)
        return False

    def _record_unrecorded(self, job_id: str) -> None:
        """Write the end of a job from _unrecorded (the caller holds the lock)."""
        _, state, fields = self._unrecorded[job_id]
        self.store.set_state(job_id, state, **fields)
        del self._unrecorded[job_id]

    def _execute(self, job: JobRecord, stop: threading.Event) -> tuple[str, dict[str, Any]]:
        """Run one job to its end; the state to record and its details."""
        paths = JobPaths.of(self.config.data_dir, job.id)
        formats = set(job.request["formats"])
        progress = ProgressWriter(self.store, job.id, self.config.progress_interval_s)

        try:
            paths.root.mkdir(parents=True, exist_ok=True)
            result = self._synthesize(job, paths, formats, progress, stop)
        except SynthCancelled:
            if self._shutting_down.is_set() and not self._cancel_requested(job.id):
                return "queued", {"message": "server stopping; resumes on restart"}
            return "cancelled", {"message": "cancelled while running"}
        except SynthDiskFull as exc:
            log.error("job %s: %s", job.id, exc)
            return "failed", {"error": disk_full_error(exc.saved_step, exc.total_steps)}
        except DiskShortage as exc:  # the preflight, when the disk filled since admission
            return "failed", {
                "error": f"not enough disk space on the server: the job needs "
                f"{gb(exc.needed)}, {gb(exc.free)} free; retry it "
                "when space is free"
            }
        except GigasynthError as exc:
            return "failed", {"error": public_error(request_words(exc))}
        except OSError as exc:
            log.exception("job %s failed", job.id)
            if exc.errno == errno.ENOSPC:
                return "failed", {"error": disk_full_error(None, None)}
            return "failed", {"error": f"internal error: {type(exc).__name__}"}
        except Exception as exc:
            log.exception("job %s failed", job.id)
            return "failed", {"error": f"internal error: {type(exc).__name__}"}
        progress.finish()
        return "succeeded", {
            "result": {
                "checkpoint_sha256": result.checkpoint_sha256,
                "seconds": round(result.seconds, 3),
                "mpx_steps_per_s": result.mpx_steps_per_s,
                "formats": sorted(formats | {"ome-zarr"}),
                "gigasynth_version": __version__,
            }
        }

    def _synthesize(
        self,
        job: JobRecord,
        paths: JobPaths,
        formats: set[str],
        progress: ProgressWriter,
        stop: threading.Event,
    ) -> SynthResult:
        """The engine's run of a job: `synthesize` for a model, `synthesize_cascade` for a
        cascade; both resumable from the saved state of an earlier attempt."""
        # resume=True continues a saved state and starts afresh where there is none;
        # overwrite=True replaces outputs an interrupted attempt left behind.
        common: dict[str, Any] = {
            "ome_tiff": paths.ome_tiff if "ome-tiff" in formats else None,
            "preview": paths.preview if "preview" in formats else None,
            "client": self._dask_client(),
            "resume": True,
            "overwrite": True,
            "progress": progress,
            "should_stop": stop.is_set,
            "work_dir": self.config.work_dir,
            "block_steps": self.config.block_steps,
        }
        entry = self.catalog.lookup(job.request["model"])
        if not isinstance(entry, CascadeEntry):
            spec = synth_spec(job.request, entry.ref, self.config.save_every)
            return synthesize(spec, paths.zarr, **common)
        settings = cascade_settings(job.request, self.config.save_every)
        if job.request.get("layout") is not None:
            return synthesize_cascade(entry.cascade, paths.layout, paths.zarr, settings, **common)
        # A generated layout: the slide's size is the request's.
        size = (job.request["width"], job.request["height"])
        return synthesize_cascade(entry.cascade, None, paths.zarr, settings, size=size, **common)

    def _cancel_requested(self, job_id: str) -> bool:
        job = self.store.job(job_id)
        return job is not None and job.cancel_requested
