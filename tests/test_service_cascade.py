"""Cascade jobs in the service: layout uploads (checked whole,
kept per token, nothing kept of a bad one), cascade jobs admitted with the stages' own
checks (422, one line), run by the service's runner to the bytes `synthesize_cascade`
makes from the same layout, seed and settings, their stage in the status, and the layout
beside the slide in the viewer (headless Chromium).

The upload and admission checks use the ASGI client (jobs stored, not run); the run, the
status and the viewer share one real `gigasynth serve` on loopback and one real job.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from gigasynth.cascade import load_cascade
from gigasynth.cascade.definition import LAYOUT_SOURCES
from gigasynth.cascade.synth import CascadeSettings, synthesize_cascade
from gigasynth.io import open_level
from gigasynth_service.app import create_app
from gigasynth_service.config import load_config
from gigasynth_service.paths import JobPaths
from tests.cascade_fixtures import MPP1, MPP2, STAGE2, write_cascade, write_layout, write_stage
from tests.service_fixtures import (
    MICRO_MODEL,
    add_token,
    running_server,
    service_config,
    wait_for_job,
    write_micro_model,
)
from tests.test_service_e2e import CHROMIUM, CHROMIUM_ARGS

CASCADE = "casc"  # its folder under the models dir: the name jobs use
JOB = {"model": CASCADE, "seed": 5, "eta": 0.5, "tile": 16, "formats": ["preview"]}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert "\n" not in message
    return message


def encoded(rgb: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt)
    return buffer.getvalue()


def upload(client: httpx.Client | TestClient, token: str, data: bytes, media_type: str):
    return client.post(
        "/v1/layouts", headers={**auth(token), "Content-Type": media_type}, content=data
    )


@pytest.fixture
def api(tmp_path):
    """(client, data dir, token A (3 layouts at most), token B); jobs are not run."""
    data_dir = tmp_path / "data"
    write_micro_model(data_dir)
    write_cascade(data_dir / "models" / CASCADE)
    token_a = add_token(data_dir, "alice", max_megapixels=5.0, max_concurrent=5)
    token_b = add_token(data_dir, "bob", max_megapixels=5.0, max_concurrent=5)
    config = service_config(data_dir, max_layout_bytes=4096, max_layouts=3)
    with TestClient(create_app(config, run_jobs=False)) as client:
        yield client, data_dir, token_a, token_b


def test_layout_uploads_are_checked_and_kept_per_token(api, monkeypatch):
    client, data_dir, token_a, token_b = api
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 7, 3), np.uint8)
    png = encoded(rgb, "PNG")
    first = upload(client, token_a, png, "image/png")
    assert first.status_code == 201, first.text
    layout = first.json()
    assert layout["id"] == hashlib.sha256(png).hexdigest()
    assert (layout["width"], layout["height"], layout["bytes"]) == (7, 9, len(png))
    kept = data_dir / "layouts"
    assert [p.read_bytes() for p in kept.rglob("*") if p.is_file()] == [png]
    again = upload(client, token_a, png, "image/png; charset=binary")
    assert again.status_code == 200 and again.json()["id"] == layout["id"]
    for fmt, media_type in (("JPEG", "image/jpeg"), ("TIFF", "image/tiff")):
        response = upload(client, token_a, encoded(rgb, fmt), media_type)
        assert response.status_code == 201, (fmt, response.text)
        assert (response.json()["width"], response.json()["height"]) == (7, 9)
    assert str(data_dir) not in client.get("/v1/layouts", headers=auth(token_a)).text
    before = sorted(p for p in kept.rglob("*") if p.is_file())
    assert len(before) == 3

    # Bad uploads: one line each, and nothing kept.
    assert "empty" in error_of(upload(client, token_b, b"", "image/png"), 400)
    assert "not a PNG" in error_of(
        upload(client, token_b, b"hello, not an image", "image/png"), 415
    )
    broken = b"\x89PNG\r\n\x1a\n" + b"garbage" * 20  # a PNG's signature, then no PNG
    assert "cannot read the layout" in error_of(upload(client, token_b, broken, "image/png"), 422)
    assert "image/png, image/jpeg or image/tiff" in error_of(
        upload(client, token_b, png, "text/plain"), 415
    )
    assert "Content-Type none" in error_of(
        client.post("/v1/layouts", headers=auth(token_b), content=png), 415
    )
    noise = rng.integers(0, 256, (64, 64, 3), np.uint8)
    assert "exceeds the limit of 4096 bytes" in error_of(
        upload(client, token_b, encoded(noise, "PNG"), "image/png"), 413
    )
    monkeypatch.setattr("gigasynth.cascade.layout.MAX_LAYOUT_PIXELS", 1000)
    flat = encoded(np.full((30, 40, 3), 200, np.uint8), "PNG")
    message = error_of(upload(client, token_b, flat, "image/png"), 422)
    assert "too large" in message and "40x30" in message and str(data_dir) not in message
    monkeypatch.undo()
    assert sorted(p for p in kept.rglob("*") if p.is_file()) == before
    assert client.get("/v1/layouts", headers=auth(token_b)).json() == {"layouts": []}

    # Quota: token A keeps 3; ownership: B can neither use nor delete A's layout.
    assert "quota exceeded: 3 layouts" in error_of(
        upload(client, token_a, encoded(rgb[:, :5], "PNG"), "image/png"), 403
    )
    assert "no such layout" in error_of(
        client.post("/v1/jobs", headers=auth(token_b), json={**JOB, "layout": layout["id"]}), 404
    )
    assert "no such layout" in error_of(
        client.delete(f"/v1/layouts/{layout['id']}", headers=auth(token_b)), 404
    )
    assert "malformed" in error_of(client.delete("/v1/layouts/x.png", headers=auth(token_a)), 404)
    assert client.delete(f"/v1/layouts/{layout['id']}", headers=auth(token_a)).status_code == 204
    assert len([p for p in kept.rglob("*") if p.is_file()]) == 2
    assert upload(client, token_a, png, "image/png").status_code == 201


def test_cascade_jobs_are_admitted_with_the_stages_checks(api):
    client, data_dir, token_a, token_b = api
    models = {
        m["name"]: m for m in client.get("/v1/models", headers=auth(token_a)).json()["models"]
    }
    listed = models[CASCADE]
    assert listed["kind"] == "cascade" and listed["factor"] == 6
    bundled = models["builtin:skin"]  # the bundled cascade is offered by its builtin name
    assert bundled["kind"] == "cascade" and bundled["layout"] == "generated"
    assert bundled["factor"] == 16 and "/" not in json.dumps(bundled).replace("µm", "")
    assert [s["mpp"] for s in listed["stages"]] == [MPP1, MPP2]
    assert str(data_dir) not in str(listed)
    rgb = np.random.default_rng(1).integers(0, 256, (9, 7, 3), np.uint8)  # colour: an image
    layout = upload(client, token_a, encoded(rgb, "JPEG"), "image/jpeg")
    job = {**JOB, "layout": layout.json()["id"]}

    def submit(**changes: object) -> httpx.Response:
        return client.post("/v1/jobs", headers=auth(token_a), json={**job, **changes})

    accepted = submit()
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert (body["request"]["width"], body["request"]["height"]) == (42, 54)
    assert body["provenance"]["mpp"] == pytest.approx(MPP2)
    assert len(body["provenance"]["stages"]) == 2 and body["provenance"]["steps"] is None
    assert body["links"]["layout"].startswith(f"/v1/jobs/{body['id']}/layout?exp=")
    copy = JobPaths.of(data_dir, body["id"]).layout
    decoded = np.asarray(Image.open(io.BytesIO(encoded(rgb, "JPEG"))).convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(copy)), decoded)  # its pixels, as PNG
    shown = client.get(f"/v1/jobs/{body['id']}/layout", headers=auth(token_a))
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/png"
    assert shown.content == copy.read_bytes()
    assert submit(width=42, height=54).status_code == 202

    refusals = {
        "stage 1 of 2: tile 6 px is smaller": submit(tile=6),
        "starts from a layout": submit(layout=None, width=42, height=54),
        "'micro' is a single model": submit(model=MICRO_MODEL),
        "steps is not taken with cascade": submit(steps=3),
        "makes a 42x54 px slide": submit(width=40),
        "invalid request: layout": submit(layout="../etc/passwd"),
    }
    for fragment, response in refusals.items():
        assert fragment in error_of(response, 422), fragment
    plain = client.post(
        "/v1/jobs", headers=auth(token_a), json={"model": MICRO_MODEL, "width": 64, "steps": 2}
    )
    assert "missing field 'height'" in error_of(plain, 422)
    assert "missing API token" in error_of(client.get(f"/v1/jobs/{body['id']}/layout"), 401)
    assert "no such job" in error_of(
        client.get(f"/v1/jobs/{body['id']}/layout", headers=auth(token_b)), 404
    )


# ---- one real server, one real cascade job ----


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(server, token, data dir, layout file, finished job, stage labels seen while it ran)."""
    root = tmp_path_factory.mktemp("cascade-service")
    data_dir = root / "data"
    write_cascade(data_dir / "models" / CASCADE)
    token = add_token(data_dir, "viewer", max_concurrent=2)
    layout = write_layout(root / "layout.png", 7, 9)
    with (
        running_server(data_dir) as server,
        httpx.Client(base_url=server.url, headers=auth(token), timeout=60) as client,
    ):
        uploaded = upload(client, token, layout.read_bytes(), "image/png")
        assert uploaded.status_code == 201, uploaded.text
        submitted = client.post("/v1/jobs", json={**JOB, "layout": uploaded.json()["id"]})
        assert submitted.status_code == 202, submitted.text
        seen: list[str] = []

        def note(job: dict) -> bool:
            if job.get("progress") and job["progress"].get("stage_label"):
                seen.append(job["progress"]["stage_label"])
            return False

        job = wait_for_job(client, submitted.json()["id"], timeout=240, predicate=note)
        yield server, token, data_dir, layout, job, seen


def test_a_cascade_job_makes_what_synthesize_cascade_makes(served, tmp_path):
    _, _, data_dir, layout, job, _ = served
    paths = JobPaths.of(data_dir, job["id"])
    settings = CascadeSettings(seed=5, eta=0.5, tile=16)
    direct = synthesize_cascade(
        load_cascade(data_dir / "models" / CASCADE),
        layout,
        tmp_path / "direct.ome.zarr",
        settings,
        preview=tmp_path / "direct.png",
    )
    served_level0 = np.asarray(open_level(paths.zarr, 0, mode="r")[:])
    assert served_level0.shape == (3, 54, 42)
    assert np.array_equal(served_level0, np.asarray(open_level(direct.zarr_path, 0, mode="r")[:]))
    assert paths.preview.read_bytes() == (tmp_path / "direct.png").read_bytes()
    assert job["provenance"]["checkpoint_sha256"] == direct.checkpoint_sha256


def test_a_cascade_jobs_status_shows_its_stage(served):
    _, _, _, _, job, seen = served
    progress = job["progress"]
    assert (progress["stage"], progress["stages"], progress["stage_label"]) == (
        2,
        2,
        "stage 2 of 2",
    )
    assert progress["phase"] == "done" and progress["fraction"] == 1.0
    assert set(seen) <= {"stage 1 of 2", "stage 2 of 2"}


def test_a_cancelled_cascade_job_resumes_inside_its_stage(served, tmp_path):
    """Cancelled inside stage 2 (its engine state kept), retried: it resumes there, not
    from stage 1, and ends with the bytes of an uninterrupted run."""
    server, token, data_dir, layout, _, _ = served
    root = data_dir / "models" / "casc-long"  # the same stages, stage 2 with 40 steps
    root.mkdir()
    (root / "cascade.json").write_text(
        '{"stages": [{"checkpoint": "../casc/s1", "steps": 3},'
        ' {"checkpoint": "../casc/s2", "steps": 40}]}'
    )
    with httpx.Client(base_url=server.url, headers=auth(token), timeout=60) as client:
        layout_id = upload(client, token, layout.read_bytes(), "image/png").json()["id"]
        submitted = client.post("/v1/jobs", json={**JOB, "model": "casc-long", "layout": layout_id})
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]

        def in_stage_2(job: dict) -> bool:
            progress = job["progress"] or {}
            return progress.get("stage") == 2 and progress.get("step", 0) >= 2

        wait_for_job(client, job_id, until=(), predicate=in_stage_2, timeout=240)
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 202
        wait_for_job(client, job_id, until=("cancelled",))
        # The upload may go: the job runs on its own copy.
        assert client.delete(f"/v1/layouts/{layout_id}").status_code == 204
        retried = client.post(f"/v1/jobs/{job_id}/retry")
        assert retried.status_code == 202, retried.text
        first: list[dict] = []

        def note(job: dict) -> bool:
            if job["state"] == "running" and job["progress"] and not first:
                first.append(job["progress"])
            return False

        done = wait_for_job(client, job_id, timeout=240, predicate=note)
    assert done["attempts"] == 2 and done["progress"]["start_step"] >= 2
    assert all(p["stage"] == 2 for p in first)  # stage 1 was not made again
    direct = synthesize_cascade(
        load_cascade(root), layout, tmp_path / "direct.ome.zarr", CascadeSettings(5, 0.5, 16)
    )
    served_level0 = open_level(JobPaths.of(data_dir, job_id).zarr, 0, mode="r")[:]
    assert np.array_equal(served_level0, open_level(direct.zarr_path, 0, mode="r")[:])


def test_the_viewer_shows_the_layout_beside_the_slide(served):
    server, _, _, _, job, _ = served
    if not CHROMIUM.exists():
        pytest.skip("no browser: Debian's chromium is not installed at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    if not (load_config().openseadragon_dir / "openseadragon.min.js").is_file():
        pytest.skip("OpenSeadragon is not installed: run `npm ci` in the repository root")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(server.url + job["links"]["viewer"])  # the signed link, no token
            page.wait_for_selector("#slide canvas", timeout=30_000)
            page.wait_for_function(
                "() => { const i = document.getElementById('layout');"
                " return i.complete && i.naturalWidth > 0; }",
                timeout=30_000,
            )
            size = page.evaluate(
                "() => [document.getElementById('layout').naturalWidth,"
                " document.getElementById('layout').naturalHeight]"
            )
            assert page.locator("#layout-panel").is_visible()
            assert "stage 2 of 2" in page.locator("#progress").inner_text()
            assert "2x to" in page.locator("#provenance").inner_text()
        finally:
            browser.close()
    assert size == [7, 9] and not problems


@pytest.mark.skipif(
    "generated" not in LAYOUT_SOURCES, reason="the cascade has no generated layouts yet"
)
def test_a_generated_layout_job_takes_its_size_from_the_request(tmp_path):
    """A cascade whose layout is generated: the job names no layout and gives its size;
    the service makes what synthesize_cascade makes with layout None and that size."""
    data_dir = tmp_path / "data"
    root = data_dir / "models" / "gen"
    mask = replace(STAGE2, condition_channels=1, condition_downsample=2, condition_kind="mask")
    write_stage(root / "s1", mask, MPP1, 0)
    write_stage(root / "s2", STAGE2, MPP2, 1)
    (root / "cascade.json").write_text(
        '{"layout": "generated", "stages": [{"checkpoint": "s1", "steps": 2},'
        ' {"checkpoint": "s2", "steps": 2}]}'
    )
    token = add_token(data_dir, "gen")
    job = {**JOB, "model": "gen", "width": 41, "height": 54}  # 41: not a multiple of 6
    with (
        running_server(data_dir) as server,
        httpx.Client(base_url=server.url, headers=auth(token), timeout=60) as client,
    ):
        submitted = client.post("/v1/jobs", json=job)
        assert submitted.status_code == 202, submitted.text
        done = wait_for_job(client, submitted.json()["id"], timeout=240)
    direct = synthesize_cascade(
        load_cascade(root),
        None,
        tmp_path / "direct.ome.zarr",
        CascadeSettings(seed=5, eta=0.5, tile=16),
        size=(41, 54),
    )
    served_level0 = open_level(JobPaths.of(data_dir, done["id"]).zarr, 0, mode="r")[:]
    assert np.array_equal(served_level0, open_level(direct.zarr_path, 0, mode="r")[:])
