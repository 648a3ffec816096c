"""The HTTP API through the ASGI client: auth, bad input, quotas, ownership, listing, metrics.

Jobs are accepted and stored but not computed here (run_jobs=False); the end-to-end
tests run them.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from gigasynth.cli.serve import lock_data_dir
from gigasynth.errors import GigasynthError
from gigasynth_service.app import create_app
from gigasynth_service.paths import JobPaths
from tests.service_fixtures import (
    LONG_MODEL,
    MICRO_MODEL,
    OPERATOR,
    add_token,
    finished_job,
    service_config,
    write_long_micro_model,
    write_micro_model,
)

JOB = {"model": MICRO_MODEL, "width": 96, "height": 80, "steps": 3, "tile": 64}


@pytest.fixture
def api(tmp_path):
    """(client, data dir, token A (roomy quotas), token B (tight quotas))."""
    data_dir = tmp_path / "data"
    write_micro_model(data_dir)
    token_a = add_token(data_dir, "alice", max_megapixels=5.0, max_concurrent=5)
    token_b = add_token(data_dir, "bob", max_megapixels=0.01, max_concurrent=1)
    config = service_config(
        data_dir,
        max_megapixels=50.0,
        max_side=20_000,
        max_steps=100,
        max_body_bytes=4096,
        cors_origins=("https://viewer.example",),
    )
    with TestClient(create_app(config, run_jobs=False)) as client:
        yield client, data_dir, token_a, token_b


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_of(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]


def submit(client, token, **changes):
    return client.post("/v1/jobs", headers=auth(token), json={**JOB, **changes})


def test_health_is_public_and_every_other_route_needs_a_token(api):
    client, *_ = api
    assert client.get("/healthz").json()["status"] == "ok"
    job_id = "0" * 32
    routes = {path: set(ops) for path, ops in client.app.openapi()["paths"].items()}
    routes["/openapi.json"] = {"get"}
    checked = 0
    for template, methods in routes.items():
        if template == "/healthz":
            continue
        path = (
            template.replace("{job_id}", job_id)
            .replace("{level}", "0")
            .replace("{tile_name}", "0_0.jpeg")
        )
        for method in methods:
            response = client.request(method, path, params={"format": "ome-zarr"})
            expected = "operator token" if template == "/metrics" else "missing API token"
            assert expected in error_of(response, 401), (method, path)
            assert response.headers["www-authenticate"].startswith("Bearer")
            checked += 1
    assert checked >= 10


def test_wrong_or_malformed_tokens_are_refused(api):
    client, _, token_a, _ = api
    assert error_of(client.get("/v1/jobs", headers=auth("gst_nope")), 401) == "invalid API token"
    assert error_of(client.get("/v1/jobs", headers=auth(token_a + "x")), 401) == "invalid API token"
    assert "Bearer" in error_of(client.get("/v1/jobs", headers={"Authorization": token_a}), 401)
    assert "Bearer" in error_of(
        client.get("/v1/jobs", headers={"Authorization": "Basic dXNlcjpwdw=="}), 401
    )


def test_submit_status_list(api):
    client, data_dir, token_a, _ = api
    response = submit(client, token_a, formats=["ome-tiff"], seed=7)
    assert response.status_code == 202, response.text
    job = response.json()
    assert re.fullmatch(r"[0-9a-f]{32}", job["id"])
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["state"] == "queued"
    assert job["request"]["formats"] == ["ome-tiff", "ome-zarr"]
    assert job["request"]["seed"] == 7
    assert str(data_dir) not in response.text  # no paths leak into the API
    status = client.get(f"/v1/jobs/{job['id']}", headers=auth(token_a)).json()
    assert status["id"] == job["id"] and status["state"] == "queued"
    listed = client.get("/v1/jobs", headers=auth(token_a)).json()
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]
    models = {
        m["name"]: m for m in client.get("/v1/models", headers=auth(token_a)).json()["models"]
    }
    assert models[MICRO_MODEL]["parameters"] > 0 and models[MICRO_MODEL]["halo_px"] == 4
    assert all(name.startswith("builtin:") for name in set(models) - {MICRO_MODEL})


def test_pagination(api):
    client, _, token_a, _ = api
    ids = [submit(client, token_a, seed=i).json()["id"] for i in range(3)]
    first = client.get("/v1/jobs", params={"limit": 2}, headers=auth(token_a)).json()
    assert [j["id"] for j in first["jobs"]] == ids[::-1][:2]
    second = client.get(
        "/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}, headers=auth(token_a)
    ).json()
    assert [j["id"] for j in second["jobs"]] == [ids[0]]
    assert second["next_cursor"] is None
    assert "cursor" in error_of(
        client.get("/v1/jobs", params={"cursor": "../x"}, headers=auth(token_a)), 422
    )
    assert "limit" in error_of(
        client.get("/v1/jobs", params={"limit": 0}, headers=auth(token_a)), 422
    )


def test_bad_job_requests_name_the_problem(api):
    client, _, token_a, _ = api
    h = {**auth(token_a), "Content-Type": "application/json"}
    assert "malformed JSON" in error_of(client.post("/v1/jobs", headers=h, content=b"{bad"), 400)
    assert "JSON object" in error_of(client.post("/v1/jobs", headers=h, content=b"[1, 2]"), 400)
    assert "missing JSON" in error_of(client.post("/v1/jobs", headers=auth(token_a)), 400)
    assert "unknown field 'colour'" in error_of(submit(client, token_a, colour="pink"), 422)
    assert "missing field 'width'" in error_of(
        client.post("/v1/jobs", headers=auth(token_a), json={"model": MICRO_MODEL, "height": 8}),
        422,
    )
    assert "width" in error_of(submit(client, token_a, width=-5), 422)
    assert "height" in error_of(submit(client, token_a, height=0), 422)
    assert "width" in error_of(submit(client, token_a, width=10**12), 422)
    assert "width" in error_of(submit(client, token_a, width="96"), 422)  # strict types
    assert "limit of 20000 px" in error_of(submit(client, token_a, width=30_000), 422)
    assert "megapixels, over this service's limit" in error_of(
        submit(client, token_a, width=10_000, height=10_000), 422
    )
    assert "steps 101 exceeds this service's limit" in error_of(
        submit(client, token_a, steps=101), 422
    )
    assert "sampler" in error_of(submit(client, token_a, sampler="euler"), 422)
    assert "formats" in error_of(submit(client, token_a, formats=["png"]), 422)
    assert "unknown model 'nope'" in error_of(submit(client, token_a, model="nope"), 422)
    assert "unknown model '../models/micro'" in error_of(
        submit(client, token_a, model="../models/micro"), 422
    )
    assert "twice the model's halo" in error_of(submit(client, token_a, tile=6), 422)
    assert "too small (at least 2x2)" in error_of(submit(client, token_a, width=1), 422)
    assert "mpp" in error_of(submit(client, token_a, mpp=1e-9), 422)
    assert "exceeds the model's 50 diffusion timesteps" in error_of(
        submit(client, token_a, steps=60), 422
    )
    assert client.get("/v1/jobs", headers=auth(token_a)).json()["jobs"] == []


def test_body_limit(api):
    client, _, token_a, _ = api
    padded = {**JOB, "model": "m" * 5000}
    assert "exceeds the limit of 4096 bytes" in error_of(
        client.post("/v1/jobs", headers=auth(token_a), json=padded), 413
    )

    def chunks():  # no Content-Length: counted as it comes
        yield b'{"model": "'
        for _ in range(10):
            yield b"m" * 1000
        yield b'"}'

    response = client.post(
        "/v1/jobs", content=chunks(), headers={**auth(token_a), "Content-Type": "application/json"}
    )
    assert "exceeds the limit" in error_of(response, 413)


def test_quotas(api):
    client, _, _, token_b = api
    assert error_of(submit(client, token_b, width=200, height=100), 403) == (
        "quota exceeded: 0.02 megapixels per job requested, this token allows 0.01"
    )
    assert submit(client, token_b, width=64, height=64).status_code == 202
    response = submit(client, token_b, width=64, height=64)
    assert "1 at a time" in error_of(response, 429)
    assert response.headers["retry-after"]


def test_another_tokens_job_is_invisible(api):
    client, data_dir, token_a, token_b = api
    queued = submit(client, token_a).json()["id"]
    done = finished_job(data_dir, token_a, 300, 200, formats=("ome-zarr", "ome-tiff"))
    unknown = "f" * 32
    for job_id in (queued, done):
        expected = f"no such job: {job_id}"
        h = auth(token_b)
        assert error_of(client.get(f"/v1/jobs/{job_id}", headers=h), 404) == expected
        assert error_of(client.delete(f"/v1/jobs/{job_id}", headers=h), 404) == expected
        assert (
            error_of(
                client.get(f"/v1/jobs/{job_id}/download", params={"format": "ome-tiff"}, headers=h),
                404,
            )
            == expected
        )
        assert error_of(client.get(f"/v1/slides/{job_id}.dzi", headers=h), 404) == expected
        assert (
            error_of(client.get(f"/v1/slides/{job_id}_files/0/0_0.jpeg", headers=h), 404)
            == expected
        )
        assert error_of(client.get(f"/view/{job_id}", headers=h), 404) == expected
    assert (
        error_of(client.get(f"/v1/jobs/{unknown}", headers=auth(token_b)), 404)
        == f"no such job: {unknown}"
    )
    assert client.get("/v1/jobs", headers=auth(token_b)).json()["jobs"] == []
    assert client.get(f"/v1/jobs/{done}", headers=auth(token_a)).json()["state"] == "succeeded"


def test_cancel_queued_then_delete(api):
    client, data_dir, token_a, _ = api
    job_id = submit(client, token_a).json()["id"]
    cancelled = client.delete(f"/v1/jobs/{job_id}", headers=auth(token_a))
    assert cancelled.status_code == 202
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["cancel_requested"] is True
    done = finished_job(data_dir, token_a, 100, 100)
    assert JobPaths.of(data_dir, done).zarr.is_dir()
    for finished in (job_id, done):
        assert client.delete(f"/v1/jobs/{finished}", headers=auth(token_a)).status_code == 204
        assert error_of(client.get(f"/v1/jobs/{finished}", headers=auth(token_a)), 404)
    assert not JobPaths.of(data_dir, done).root.exists()
    events = client.app.state.services.store.events(job_id)
    assert [e[1] for e in events] == ["queued", "queued", "cancelled", "deleted"]


def test_traversal_never_reaches_a_file(api):
    client, data_dir, token_a, _ = api
    (data_dir / "secret.txt").write_text("TOP SECRET")
    h = auth(token_a)
    attempts = [
        "/v1/jobs/..%2Fsecret.txt",
        "/v1/jobs/%2e%2e%2fsecret.txt",
        "/v1/jobs/../secret.txt",
        "/v1/slides/..%2F..%2Fsecret.txt.dzi",
        "/v1/slides/%2e%2e/secret.txt.dzi",
        "/v1/slides/" + "0" * 32 + "_files/..%2F..%2F/secret.txt",
        "/view/..%2Fsecret.txt",
        "/static/viewer/..%2F..%2Fsecret.txt",
        "/static/viewer/../../../data/secret.txt",
        "/static/openseadragon/..%2F..%2F..%2Fpackage.json",
        "/v1/jobs/" + "0" * 32 + "/download?format=..%2Fsecret.txt",
    ]
    for path in attempts:
        response = client.get(path, headers=h)
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert "TOP SECRET" not in response.text and '"name"' not in response.text
        assert response.headers["content-type"].startswith("application/json"), path


def test_metrics_and_openapi(api):
    client, data_dir, token_a, _ = api
    submit(client, token_a)
    finished_job(data_dir, token_a, 100, 100)
    assert client.get("/metrics", headers=auth(token_a)).status_code == 401  # not an API token's
    text = client.get("/metrics", headers=auth(OPERATOR)).text
    assert 'gigasynth_jobs{state="queued"} 1.0' in text
    assert 'gigasynth_jobs{state="succeeded"} 1.0' in text
    assert "gigasynth_tiles_served_total" in text
    assert (
        'gigasynth_http_request_duration_seconds_bucket{le="+Inf",method="POST",'
        'route="/v1/jobs",status="202"} 1.0'
    ) in text
    schema = client.get("/openapi.json", headers=auth(token_a)).json()
    assert {
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/download",
        "/v1/slides/{job_id}.dzi",
        "/v1/models",
        "/healthz",
    } <= set(schema["paths"])


def test_cors_only_for_configured_origins(api):
    client, _, token_a, _ = api
    allowed = client.options(
        "/v1/jobs",
        headers={
            "Origin": "https://viewer.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert allowed.headers["access-control-allow-origin"] == "https://viewer.example"
    other = client.get("/v1/jobs", headers={**auth(token_a), "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_one_server_per_data_dir(tmp_path):
    held = lock_data_dir(tmp_path)
    try:
        with pytest.raises(GigasynthError, match="another gigasynth server is using"):
            lock_data_dir(tmp_path)
    finally:
        held.close()
    lock_data_dir(tmp_path).close()  # free again once released


def test_a_resolution_the_model_does_not_make_is_refused(api):
    """The micro model records 0.5 µm/px: a job asking for 0.25 would label every pixel 2x
    too small, so it is refused; a model that records none takes the request's."""
    client, data_dir, token_a, _ = api
    refused = error_of(submit(client, token_a, mpp=0.25), 422)
    assert "mpp 0.25 µm/px is not the model's resolution" in refused
    assert "makes 0.5 µm/px (about 20x)" in refused
    close = submit(client, token_a, mpp=0.502)
    assert close.status_code == 202, close.text
    provenance = close.json()["provenance"]  # shown from submission on
    assert (provenance["mpp"], provenance["magnification"], provenance["mpp_source"]) == (
        0.5,
        20.0,
        "model",
    )
    assert provenance["submitted"] and provenance["gigasynth_version"]
    write_long_micro_model(data_dir)  # records no resolution
    unrecorded = submit(client, token_a, model=LONG_MODEL, tile=0, mpp=0.25)
    assert unrecorded.status_code == 202, unrecorded.text
    assert (
        unrecorded.json()["provenance"]["mpp"],
        unrecorded.json()["provenance"]["mpp_source"],
    ) == (0.25, "request")
