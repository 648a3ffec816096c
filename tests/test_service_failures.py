"""The service when things break: a job store that cannot be written, a full disk, retries,
and the distributed path as deployed (scheduler and worker processes, a worker killed).

Real components: the app with its runner threads and embedded Dask cluster, a real SQLite
store whose connection refuses writes as SQLite does on a full disk, the engine's own
disk-full path (ENOSPC from the tile tasks' writes), `dask scheduler` / `dask worker`
processes and `gigasynth synth` / `gigasynth serve` processes on loopback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from distributed import Client
from fastapi.testclient import TestClient

from gigasynth.io import open_level
from gigasynth.synth import SynthSpec, synthesize
from gigasynth.synth import tasks as synth_tasks
from gigasynth_service.app import create_app
from gigasynth_service.paths import JobPaths
from tests.service_fixtures import (
    LONG_MODEL,
    MICRO_MODEL,
    add_token,
    free_port,
    running_server,
    service_config,
    wait_for_job,
    write_long_micro_model,
    write_micro_model,
)


class FullDiskConnection:
    """An SQLite connection that, while `full`, fails every write the way SQLite does when
    the disk is full (reads go through): the store's boundary with the file system."""

    WRITES = ("BEGIN", "INSERT", "UPDATE", "DELETE", "REPLACE")

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.full = False

    def execute(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        if self.full and sql.lstrip().split(None, 1)[0].upper() in self.WRITES:
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, args)

    def __getattr__(self, name: str) -> object:
        return getattr(self.db, name)


def level0(data_dir, job_id: str) -> np.ndarray:
    return open_level(JobPaths.of(data_dir, job_id).zarr, 0)[:]


def test_unwritable_store_never_strands_a_job(tmp_path):
    """The final state change fails (disk full): the job is not left running forever, its
    quota slot is free once the disk is, and it can be deleted."""
    data_dir = tmp_path / "data"
    write_long_micro_model(data_dir)
    token = add_token(data_dir, "full", max_concurrent=1)
    config = service_config(data_dir, progress_interval_s=0.05)
    app = create_app(config)
    svc = app.state.services
    svc.runner.record_retry_s = (0.05, 0.05)
    svc.runner.settle_interval_s = 0.3
    disk = FullDiskConnection(svc.store._db)
    svc.store._db = disk
    job = {
        "model": LONG_MODEL,
        "width": 48,
        "height": 40,
        "steps": 40,
        "tile": 0,
        "formats": ["ome-zarr"],
    }

    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as api:
        job_id = api.post("/v1/jobs", json=job).json()["id"]
        wait_for_job(
            api, job_id, until=(), predicate=lambda j: (j["progress"] or {}).get("step", 0) >= 1
        )
        disk.full = True  # the job computes on, its end is refused
        slide = JobPaths.of(data_dir, job_id).zarr
        wait_for_job(
            api,
            job_id,
            until=(),
            timeout=120,
            predicate=lambda _: slide.is_dir() and job_id in svc.runner.unrecorded(),
        )
        assert api.get(f"/v1/jobs/{job_id}").json()["state"] == "running"  # as recorded
        for refused in (api.delete(f"/v1/jobs/{job_id}"), api.post("/v1/jobs", json=job)):
            assert refused.status_code == 503, refused.text
            assert "not writable" in refused.json()["error"]
        disk.full = False  # space again: the end is written, the slot free
        second = api.post("/v1/jobs", json={**job, "steps": 2})
        assert second.status_code == 202, second.text
        wait_for_job(api, job_id, until=("succeeded",), timeout=10)
        assert level0(data_dir, job_id).shape == (3, 40, 48)
        wait_for_job(api, second.json()["id"], until=("succeeded",))
        assert api.delete(f"/v1/jobs/{job_id}").status_code == 204
        assert api.get(f"/v1/jobs/{job_id}").status_code == 404


def test_a_lost_run_stays_cancellable(tmp_path):
    """A job recorded as running that no runner thread runs (its end was lost) is cancelled
    by DELETE at once, then deleted, instead of ignoring both."""
    data_dir = tmp_path / "data"
    write_micro_model(data_dir)
    token = add_token(data_dir, "lost", max_concurrent=1)
    app = create_app(service_config(data_dir), run_jobs=False)
    store = app.state.services.store
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as api:
        job_id = api.post(
            "/v1/jobs",
            json={"model": MICRO_MODEL, "width": 32, "height": 32, "steps": 2, "tile": 0},
        ).json()["id"]
        store.set_state(job_id, "running")  # as a thread that died would leave it
        assert (
            api.post(
                "/v1/jobs",
                json={"model": MICRO_MODEL, "width": 32, "height": 32, "steps": 2, "tile": 0},
            ).status_code
            == 429
        )
        cancelled = api.delete(f"/v1/jobs/{job_id}")
        assert cancelled.status_code == 202 and cancelled.json()["state"] == "cancelled"
        assert api.delete(f"/v1/jobs/{job_id}").status_code == 204


@pytest.mark.slow
def test_disk_full_error_is_clean_and_retry_resumes_to_the_same_bytes(tmp_path, monkeypatch):
    """A full disk fails the job with a message free of server paths and CLI advice;
    POST /retry resumes it from its saved step; a cancelled job resumes the same way;
    both end byte-identical to an uninterrupted run. Retries obey the quotas."""
    data_dir = tmp_path / "data"
    write_micro_model(data_dir)
    token = add_token(data_dir, "retry", max_concurrent=1)
    config = service_config(data_dir, save_every=2, progress_interval_s=0.05)
    job = {
        "model": MICRO_MODEL,
        "width": 96,
        "height": 80,
        "steps": 8,
        "tile": 64,
        "seed": 5,
        "formats": ["ome-zarr"],
    }
    write = synth_tasks.write_region
    full = {"on": True}

    def disk_full_at_step_5(path, rows, cols, values):
        if full["on"] and path.name == "x-000005.zarr":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        write(path, rows, cols, values)

    monkeypatch.setattr(synth_tasks, "write_region", disk_full_at_step_5)
    with TestClient(create_app(config), headers={"Authorization": f"Bearer {token}"}) as api:
        failed_id = api.post("/v1/jobs", json=job).json()["id"]
        failed = wait_for_job(api, failed_id, until=("failed",))
        error = failed["error"]
        assert "disk space" in error and "step 4 of 8" in error and "retry" in error
        assert "/" not in error and str(tmp_path) not in error, error
        assert not re.search(r"resume|--\w", error), error
        full["on"] = False

        # Only failed or cancelled jobs can be retried; a retry counts against the quotas.
        other_id = api.post("/v1/jobs", json={**job, "steps": 40, "seed": 6}).json()["id"]
        wait_for_job(
            api, other_id, until=(), predicate=lambda j: (j["progress"] or {}).get("step", 0) >= 3
        )
        assert api.post(f"/v1/jobs/{other_id}/retry").status_code == 409
        busy = api.post(f"/v1/jobs/{failed_id}/retry")
        assert busy.status_code == 429 and "1 at a time" in busy.json()["error"]
        assert api.delete(f"/v1/jobs/{other_id}").status_code == 202
        wait_for_job(api, other_id, until=("cancelled",))
        work = JobPaths.of(data_dir, other_id).root / "slide.ome.zarr.work"
        saved = json.loads((work / "progress.json").read_text())["step"]
        assert saved >= 2

        retried = api.post(f"/v1/jobs/{failed_id}/retry")
        assert retried.status_code == 202, retried.text
        assert retried.json()["state"] == "queued" and retried.json()["error"] is None
        done = wait_for_job(api, failed_id)
        assert done["progress"]["start_step"] == 4 and done["attempts"] == 2
        assert api.post(f"/v1/jobs/{failed_id}/retry").status_code == 409

        assert api.post(f"/v1/jobs/{other_id}/retry").status_code == 202
        resumed = wait_for_job(api, other_id, timeout=120)
        assert resumed["progress"]["start_step"] == saved

        reference_id = api.post("/v1/jobs", json=job).json()["id"]
        wait_for_job(api, reference_id)
        assert np.array_equal(level0(data_dir, failed_id), level0(data_dir, reference_id))
        other_reference = api.post("/v1/jobs", json={**job, "steps": 40, "seed": 6}).json()
        wait_for_job(api, other_reference["id"], timeout=120)
        assert np.array_equal(level0(data_dir, other_id), level0(data_dir, other_reference["id"]))


@contextlib.contextmanager
def dask_cluster_processes(workdir: Path, workers: int = 2) -> Iterator[tuple[str, list]]:
    """`dask scheduler` and `dask worker` processes on loopback (random free ports, one
    thread each, no nanny: SIGKILL on a worker's process kills the worker itself)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    dask = [sys.executable, "-m", "dask"]
    log = open(workdir / "dask.log", "ab")  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ]
    try:
        procs += [
            subprocess.Popen(
                [
                    *dask,
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--name",
                    f"w{i}",
                ],
                env=env,
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for i in range(workers)
        ]
        deadline = time.monotonic() + 60
        while True:
            with (
                contextlib.suppress(OSError, TimeoutError),
                Client(address, timeout=2, set_as_default=False) as client,
            ):
                client.wait_for_workers(workers, timeout=60)
                break
            assert time.monotonic() < deadline, (workdir / "dask.log").read_text()
            time.sleep(0.3)
        yield address, procs[1:]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
        log.close()


@pytest.mark.slow
def test_scheduler_and_worker_processes_give_the_embedded_bytes(tmp_path):
    """The deployed path: a real scheduler and two worker processes. `gigasynth synth
    --scheduler` and the service with GIGASYNTH_SCHEDULER write the embedded cluster's
    level 0 byte for byte, the service's job even though a worker is SIGKILLed mid-run
    (Dask runs its tasks again elsewhere; a tile task writes the same bytes to its own
    chunk whenever it runs, and an exchange ends only when no task of it is running)."""
    size, seed, steps, tile = (200, 150), 3, 2, 64
    spec = SynthSpec("builtin:tiny-pathology", *size, seed=seed, steps=steps, tile=tile)
    with dask_cluster_processes(tmp_path) as (address, workers):
        reference = synthesize(spec, tmp_path / "embedded.ome.zarr", workers=1).zarr_path
        expected = open_level(reference, 0)[:]

        out = tmp_path / "remote.ome.zarr"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "gigasynth",
                "synth",
                "--checkpoint",
                spec.checkpoint,
                "--size",
                f"{size[0]}x{size[1]}",
                "--seed",
                str(seed),
                "--steps",
                str(steps),
                "--tile",
                str(tile),
                "--scheduler",
                address,
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert np.array_equal(open_level(out, 0)[:], expected)

        data_dir = tmp_path / "data"
        token = add_token(data_dir, "dask")
        with (
            running_server(data_dir, {"GIGASYNTH_SCHEDULER": address}) as server,
            httpx.Client(
                base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
            ) as api,
        ):
            job = {
                "model": spec.checkpoint,
                "width": size[0],
                "height": size[1],
                "seed": seed,
                "steps": steps,
                "tile": tile,
                "formats": ["ome-zarr"],
            }
            killed = api.post("/v1/jobs", json=job).json()["id"]
            progress = wait_for_job(
                api,
                killed,
                until=(),
                timeout=60,
                predicate=lambda j: (j["progress"] or {}).get("step", 0) >= 1,
            )["progress"]
            workers[1].send_signal(signal.SIGKILL)
            workers[1].wait(10)
            done = wait_for_job(api, killed, timeout=120)
            assert progress["step"] < steps and done["attempts"] == 1
            assert np.array_equal(level0(data_dir, killed), expected)
