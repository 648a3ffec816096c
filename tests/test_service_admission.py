"""Admission costs the same at any slide size and holds no lock across work: oversized
submissions are refused at once and never delay other tokens or /healthz.

experiments/admission_bench.py measures the same situation at full scale (45 clients).
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anyio.to_thread
import httpx
from fastapi.testclient import TestClient

from gigasynth_service.app import create_app
from gigasynth_service.routes.system import HEALTH_WAIT_S
from tests.service_fixtures import (
    MICRO_MODEL,
    add_token,
    running_server,
    service_config,
    write_micro_model,
)

OVERSIZED = {"model": MICRO_MODEL, "width": 50_000, "height": 50_000, "tile": 24, "steps": 2}
SMALL = {
    "model": MICRO_MODEL,
    "width": 16,
    "height": 16,
    "tile": 0,
    "steps": 1,
    "formats": ["ome-zarr"],
}


def test_oversized_submissions_do_not_delay_another_token(tmp_path):
    """A real server: 12 concurrent 50000 x 50000 submissions over a token's quota are
    refused quickly (403), while another token's small job is accepted and /healthz
    answers, each within a second or two (on aa0f305: 27 s each, one after another)."""
    data_dir = tmp_path / "data"
    write_micro_model(data_dir)
    greedy = add_token(data_dir, "greedy")  # 1000 megapixels per job
    modest = add_token(data_dir, "modest")

    async def timed(
        api: httpx.AsyncClient, method: str, url: str, token: str | None, body: dict | None = None
    ) -> tuple[int, float]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        start = time.perf_counter()
        response = await api.request(method, url, json=body, headers=headers)
        return response.status_code, time.perf_counter() - start

    async def burst(url: str) -> list[tuple[int, float]]:
        async with httpx.AsyncClient(base_url=url, timeout=20) as api:
            oversized = [timed(api, "POST", "/v1/jobs", greedy, OVERSIZED) for _ in range(12)]
            await asyncio.sleep(0)
            return await asyncio.gather(
                *oversized,
                timed(api, "POST", "/v1/jobs", modest, SMALL),
                timed(api, "GET", "/healthz", None),
            )

    with running_server(data_dir) as server:
        asyncio.run(burst(server.url))  # warm-up: model catalog, imports
        *refused, accepted, health = asyncio.run(burst(server.url))
    assert {status for status, _ in refused} == {403}
    assert accepted[0] == 202 and health[0] == 200
    slowest = max(seconds for _, seconds in [*refused, accepted, health])
    assert slowest < 2.5, f"slowest answer {slowest:.2f} s: {refused}, {accepted}, {health}"


def test_a_huge_valid_job_is_admitted_in_constant_time(tmp_path):
    """Within every quota, a 50000 x 50000 job in 24 px tiles (4.3 million tiles) is
    checked by the engine's own rules and accepted as fast as a small one."""
    data_dir = tmp_path / "data"
    write_micro_model(data_dir)
    token = add_token(data_dir, "roomy", max_megapixels=10_000)
    app = create_app(service_config(data_dir), run_jobs=False)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as api:
        assert api.post("/v1/jobs", json=SMALL).status_code == 202  # warm the catalog
        start = time.perf_counter()
        response = api.post("/v1/jobs", json=OVERSIZED)
        seconds = time.perf_counter() - start
    assert response.status_code == 202, response.text
    assert seconds < 0.5, f"admission took {seconds:.2f} s"


def test_concurrency_quota_holds_without_a_global_lock(tmp_path):
    """Concurrent submissions of one token: exactly its limit is accepted (the count and
    the insert are one store transaction), the rest get 429."""
    data_dir = tmp_path / "data"
    write_micro_model(data_dir)
    token = add_token(data_dir, "racer", max_concurrent=3)
    app = create_app(service_config(data_dir), run_jobs=False)
    with (
        TestClient(app, headers={"Authorization": f"Bearer {token}"}) as api,
        ThreadPoolExecutor(12) as pool,
    ):
        statuses = list(pool.map(lambda _: api.post("/v1/jobs", json=SMALL).status_code, range(24)))
        listed = api.get("/v1/jobs", params={"limit": 100}).json()["jobs"]
    assert sorted(statuses) == [202] * 3 + [429] * 21
    assert len(listed) == 3


def test_health_needs_no_worker_thread(tmp_path):
    """/healthz answers while FastAPI's thread pool has no free thread (as when slow
    requests fill it): it runs on the event loop. On e573c15 it waited for a thread."""
    data_dir = tmp_path / "data"
    write_micro_model(data_dir)
    app = create_app(service_config(data_dir), run_jobs=False)
    with TestClient(app) as api, ThreadPoolExecutor(1) as pool:
        limiter = api.portal.call(anyio.to_thread.current_default_thread_limiter)
        tokens = limiter.total_tokens
        holder = object()

        def take_every_thread() -> None:
            limiter.total_tokens = 1
            limiter.acquire_on_behalf_of_nowait(holder)

        def give_back() -> None:
            limiter.release_on_behalf_of(holder)
            limiter.total_tokens = tokens

        api.portal.call(take_every_thread)
        try:
            start = time.perf_counter()
            answer = pool.submit(api.get, "/healthz")
            try:
                response = answer.result(timeout=10)
            except TimeoutError:
                response = None
            seconds = time.perf_counter() - start
        finally:
            api.portal.call(give_back)
        if response is None:
            answer.result(timeout=30)
    assert response is not None, "/healthz waited for a worker thread"
    assert response.status_code == 200 and response.json()["status"] == "ok"
    assert seconds < 2.0, f"/healthz took {seconds:.2f} s"


def test_health_reports_a_store_that_does_not_answer(tmp_path):
    """A store held by a stuck writer: /healthz says so (503 JSON) after about
    HEALTH_WAIT_S instead of waiting with it, and is 200 again once the store is free."""
    data_dir = tmp_path / "data"
    write_micro_model(data_dir)
    app = create_app(service_config(data_dir), run_jobs=False)
    store = app.state.services.store
    held, release = threading.Event(), threading.Event()

    def stuck_writer() -> None:  # a write transaction left open for a while
        with store._immediate():
            held.set()
            release.wait(HEALTH_WAIT_S + 5.0)

    with TestClient(app) as api, ThreadPoolExecutor(1) as pool:
        assert api.get("/healthz").status_code == 200
        writer = pool.submit(stuck_writer)
        assert held.wait(10)
        start = time.perf_counter()
        stuck = api.get("/healthz")
        seconds = time.perf_counter() - start
        release.set()
        writer.result(timeout=10)
        again = api.get("/healthz")
    assert stuck.status_code == 503, stuck.text
    assert stuck.json() == {"error": "the job store does not answer"}
    assert HEALTH_WAIT_S <= seconds < HEALTH_WAIT_S + 3.0
    assert again.status_code == 200


def test_a_block_of_steps_the_tile_cannot_hold_is_refused_at_admission(tmp_path):
    """GIGASYNTH_BLOCK_STEPS is the runner's steps per tile task: a job whose tile cannot
    hold its halo gets a 422 naming it before any work, a larger tile is admitted."""
    from gigasynth_service.config import load_config

    data_dir = tmp_path / "data"
    write_micro_model(data_dir)
    token = add_token(data_dir, "blocks")
    config = load_config({"GIGASYNTH_DATA_DIR": str(data_dir), "GIGASYNTH_BLOCK_STEPS": "3"})
    assert config.block_steps == 3
    assert load_config({"GIGASYNTH_DATA_DIR": str(data_dir)}).block_steps is None
    job = {"model": MICRO_MODEL, "width": 64, "height": 48, "steps": 2, "formats": ["ome-zarr"]}
    with TestClient(create_app(config, run_jobs=False)) as client:
        headers = {"Authorization": f"Bearer {token}"}
        refused = client.post("/v1/jobs", headers=headers, json={**job, "tile": 16})
        assert refused.status_code == 422, refused.text
        assert "block_steps 3 needs a halo of 12 px" in refused.json()["error"]
        admitted = client.post("/v1/jobs", headers=headers, json={**job, "tile": 24})
        assert admitted.status_code == 202, admitted.text
