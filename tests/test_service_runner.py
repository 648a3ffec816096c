"""The job runner inside the app: a stop puts running jobs back in the queue, the next start
resumes them from their saved step; a job that cannot run fails with the reason."""

from __future__ import annotations

import json
import shutil

from fastapi.testclient import TestClient

from gigasynth.checkpoint import save_checkpoint
from gigasynth.models import build_model
from gigasynth_service.app import create_app
from gigasynth_service.paths import JobPaths
from tests.conftest import MICRO
from tests.service_fixtures import (
    LONG_MODEL,
    add_token,
    service_config,
    wait_for_job,
    write_long_micro_model,
)


def test_stop_requeues_and_start_resumes(tmp_path):
    data_dir = tmp_path / "data"
    write_long_micro_model(data_dir)
    model = build_model(MICRO, zero_output=False)
    doomed = save_checkpoint(data_dir / "models" / "doomed", model, MICRO)
    token = add_token(data_dir, "runner", max_concurrent=5)
    config = service_config(data_dir, save_every=2, progress_interval_s=0.05)
    headers = {"Authorization": f"Bearer {token}"}
    job = {"model": LONG_MODEL, "width": 48, "height": 40, "steps": 400, "tile": 0}

    with TestClient(create_app(config), headers=headers) as api:
        long_id = api.post("/v1/jobs", json=job).json()["id"]
        failing_id = api.post("/v1/jobs", json={**job, "model": "doomed", "steps": 4}).json()["id"]
        wait_for_job(
            api, long_id, until=(), predicate=lambda j: (j["progress"] or {}).get("step", 0) >= 3
        )
        shutil.rmtree(doomed)  # the queued job's model disappears before it runs
    work = JobPaths.of(data_dir, long_id).root / "slide.ome.zarr.work"
    saved_step = json.loads((work / "progress.json").read_text())["step"]
    assert saved_step >= 2

    with TestClient(create_app(config), headers=headers) as api:  # the stop left it queued
        store = api.app.state.services.store
        assert ("queued", "server stopping; resumes on restart") in [
            (state, message) for _, state, message in store.events(long_id)
        ]
        resumed = wait_for_job(
            api,
            long_id,
            until=(),
            predicate=lambda j: (
                j["attempts"] == 2 and j["state"] == "running" and j["progress"] is not None
            ),
        )
        assert resumed["progress"]["start_step"] == saved_step
        assert api.delete(f"/v1/jobs/{long_id}").status_code == 202
        wait_for_job(api, long_id, until=("cancelled",))
        failed = wait_for_job(api, failing_id, until=("failed",))
        assert failed["error"].startswith("unknown model 'doomed'")
        assert failed["progress"] is None
