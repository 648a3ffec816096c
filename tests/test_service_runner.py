"""The job runner inside the app: a stop puts running jobs back in the queue, the next start
resumes them; a job that cannot run fails with the reason, the queue goes on."""

from __future__ import annotations

import shutil

from fastapi.testclient import TestClient

from gigasynth.checkpoint import save_checkpoint
from gigasynth.models import build_model
from service.app import create_app
from tests.conftest import MICRO
from tests.service_fixtures import (
    MICRO_MODEL,
    add_token,
    service_config,
    wait_for_job,
    write_micro_model,
)


def test_stop_requeues_and_start_resumes(tmp_path):
    data_dir = tmp_path / "data"
    write_micro_model(data_dir)
    doomed = save_checkpoint(data_dir / "models" / "doomed", build_model(MICRO), MICRO)
    token = add_token(data_dir, "runner", max_concurrent=5)
    config = service_config(data_dir, save_every=2, progress_interval_s=0.05)
    headers = {"Authorization": f"Bearer {token}"}
    job = {"model": MICRO_MODEL, "width": 48, "height": 40, "steps": 12, "tile": 0}

    with TestClient(create_app(config), headers=headers) as api:
        long_id = api.post("/v1/jobs", json=job).json()["id"]
        failing_id = api.post("/v1/jobs", json={**job, "model": "doomed"}).json()["id"]
        wait_for_job(api, long_id, until=(),
                     predicate=lambda j: (j["progress"] or {}).get("step", 0) >= 3)
        shutil.rmtree(doomed)               # the queued job's model disappears before it runs
    with TestClient(create_app(config), headers=headers) as api:   # the stop left it queued
        store = api.app.state.services.store
        assert ("queued", "server stopping; resumes on restart") in [
            (state, message) for _, state, message in store.events(long_id)]
        resumed = wait_for_job(api, long_id)
        assert resumed["attempts"] == 2
        failed = wait_for_job(api, failing_id, until=("failed",))
        assert failed["error"].startswith("unknown model 'doomed'")
        assert failed["progress"] is None
