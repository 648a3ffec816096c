"""The service end to end: a real `gigasynth serve` on loopback running real jobs on Dask.

Submit, poll, DeepZoom, downloads, cancel; and a server killed mid-job that, restarted,
finishes the job with the same pixels as an uninterrupted run (invariant I5).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import sqlite3
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from gigasynth.cli import main as cli_main
from gigasynth.io import DeepZoomGenerator, open_slide
from gigasynth.io.deepzoom import JPEG_QUALITY
from gigasynth.synth import SynthSpec, synthesize
from gigasynth_service.config import load_config
from gigasynth_service.paths import JobPaths
from tests.service_fixtures import (
    LONG_MODEL,
    MICRO_MODEL,
    OPERATOR,
    add_token,
    finished_job,
    running_server,
    start_server,
    wait_for_job,
    write_long_micro_model,
    write_micro_model,
)

BUNDLED_MODEL = "builtin:tiny-pathology"  # trained on the sample slide: H&E colours


def level0(zarr_path) -> np.ndarray:
    return zarr.open_array(str(zarr_path / "0" / "0"), mode="r")[:]


def decoded(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def as_served(pixels: np.ndarray) -> np.ndarray:
    """(3, H, W) pixels through the tile encoder's JPEG round trip."""
    buffer = io.BytesIO()
    Image.fromarray(np.moveaxis(pixels, 0, -1), "RGB").save(buffer, "JPEG", quality=JPEG_QUALITY)
    return decoded(buffer.getvalue())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(server, token, data dir): one `gigasynth serve` for this module's tests."""
    data_dir = tmp_path_factory.mktemp("e2e") / "data"
    write_micro_model(data_dir)
    write_long_micro_model(data_dir)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert (
            cli_main(
                [
                    "token",
                    "create",
                    "--name",
                    "e2e",
                    "--data-dir",
                    str(data_dir),
                    "--max-concurrent",
                    "3",
                ]
            )
            == 0
        )
    token = out.getvalue().strip()
    assert token.startswith("gst_") and "not shown again" in err.getvalue()
    with contextlib.redirect_stderr(err):
        assert cli_main(["token", "create", "--name", "e2e", "--data-dir", str(data_dir)]) == 2
    assert "a token named 'e2e' already exists" in err.getvalue()
    with running_server(data_dir) as server:
        yield server, token, data_dir


@pytest.fixture(scope="module")
def finished(served):
    """A 96 x 80 tiled job of the bundled model run to success by the server: (job as the API
    shows it, level 0)."""
    server, token, data_dir = served
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as api:
        submitted = api.post(
            "/v1/jobs",
            json={
                "model": BUNDLED_MODEL,
                "width": 96,
                "height": 80,
                "seed": 5,
                "steps": 3,
                "tile": 64,
                "formats": ["ome-tiff", "preview"],
            },
        )
        assert submitted.status_code == 202, submitted.text
        job = wait_for_job(api, submitted.json()["id"])
    return job, level0(JobPaths.of(data_dir, job["id"]).zarr)


def test_submit_poll_tiles_download(served, finished, tmp_path):
    server, token, _ = served
    job, pixels = finished
    job_id = job["id"]
    assert job["progress"]["fraction"] == 1.0
    assert job["provenance"]["checkpoint_sha256"] and job["provenance"]["synthetic"]
    assert job["throughput_mpx_steps_per_s"] > 0
    assert pixels.shape == (3, 80, 96)

    browser = httpx.Client(base_url=server.url, timeout=30)  # no token: signed link
    dzi = browser.get(job["links"]["dzi"])
    assert dzi.status_code == 200 and 'Width="96" Height="80"' in dzi.text
    query = job["links"]["dzi"].split("?", 1)[1]
    tile = browser.get(f"/v1/slides/{job_id}_files/7/0_0.jpeg?{query}")
    assert tile.status_code == 200 and tile.headers["etag"]
    np.testing.assert_array_equal(decoded(tile.content), as_served(pixels))
    assert browser.get(f"/v1/slides/{job_id}_files/8/0_0.jpeg?{query}").status_code == 404
    assert browser.get(f"/v1/slides/{job_id}_files/0/0_0.jpeg?{query}").status_code == 200

    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as api:
        zipped = api.get(f"/v1/jobs/{job_id}/download", params={"format": "ome-zarr"})
        assert zipped.status_code == 200
        zipfile.ZipFile(io.BytesIO(zipped.content)).extractall(tmp_path / "unzipped")
        unzipped = tmp_path / "unzipped" / f"gigasynth-{job_id}.ome.zarr"
        np.testing.assert_array_equal(level0(unzipped), pixels)
        assert (unzipped / "OME" / "METADATA.ome.xml").is_file()
        tiff = api.get(f"/v1/jobs/{job_id}/download", params={"format": "ome-tiff"})
        assert tiff.status_code == 200
        with tifffile.TiffFile(io.BytesIO(tiff.content)) as t:
            assert t.is_ome and t.series[0].shape == (80, 96, 3)
        preview = api.get(f"/v1/jobs/{job_id}/download", params={"format": "preview"})
        assert preview.headers["content-type"] == "image/png"
        metrics = api.get("/metrics", headers={"Authorization": f"Bearer {OPERATOR}"}).text
        assert "gigasynth_tiles_served_total 2.0" in metrics
        assert 'gigasynth_jobs{state="succeeded"} 1.0' in metrics


def test_cancel_keeps_partial_state_until_delete(served):
    server, token, data_dir = served
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as api:
        submitted = api.post(
            "/v1/jobs",
            json={"model": LONG_MODEL, "width": 96, "height": 80, "steps": 400, "tile": 0},
        )
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        wait_for_job(
            api, job_id, until=(), predicate=lambda j: j["state"] == "running" and j["progress"]
        )
        assert api.delete(f"/v1/jobs/{job_id}").status_code == 202
        cancelled = wait_for_job(api, job_id, until=("cancelled",))
        assert cancelled["cancel_requested"]
        paths = JobPaths.of(data_dir, job_id)
        assert (paths.root / "slide.ome.zarr.work" / "progress.json").is_file()  # kept
        assert api.delete(f"/v1/jobs/{job_id}").status_code == 204
        assert not paths.root.exists()
        assert api.get(f"/v1/jobs/{job_id}").status_code == 404


def _store_state(data_dir, job_id) -> str:
    with sqlite3.connect(data_dir / "jobs.sqlite3") as db:
        return db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]


def _kill_mid_job(server, token: str, request: dict) -> tuple[str, int]:
    """Submit jobs of growing length until one is seen running past its first save and
    within its first half, then SIGKILL the server: (that job's id, its steps). Short jobs
    can pass that window between two polls on a fast machine, so each miss retries with
    four times the steps."""

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as api:
        for steps in (16, 64, 256, 400):

            def in_first_half(job: dict, steps: int = steps) -> bool:
                # Past the first save, with half the job left: the kill lands mid-denoise
                # even when the job runs on between this poll and the kill.
                step = (job["progress"] or {}).get("step", 0)
                return job["state"] == "running" and 3 <= step <= steps // 2

            job_id = api.post("/v1/jobs", json={**request, "steps": steps}).json()["id"]
            job = wait_for_job(
                api, job_id, until=("succeeded",), timeout=120, predicate=in_first_half
            )
            if job["state"] == "running":
                server.kill()  # SIGKILL: a crash
                return job_id, steps
    raise AssertionError("every job finished before the server could be killed")


def test_killed_server_resumes_the_job_to_identical_pixels(tmp_path):
    data_dir = tmp_path / "data"
    model = write_long_micro_model(data_dir)
    token = add_token(data_dir, "restart", max_concurrent=5)
    env = {"GIGASYNTH_SAVE_EVERY": "2"}
    request = {
        "model": LONG_MODEL,
        "width": 64,
        "height": 48,
        "seed": 11,
        "tile": 0,
        "formats": ["ome-zarr"],
    }

    server = start_server(data_dir, env)
    try:
        job_id, steps = _kill_mid_job(server, token, request)
    finally:
        server.stop()
    assert _store_state(data_dir, job_id) == "running"
    work = JobPaths.of(data_dir, job_id).root / "slide.ome.zarr.work"
    saved_step = json.loads((work / "progress.json").read_text())["step"]
    assert 2 <= saved_step < steps

    with (
        running_server(data_dir, env) as restarted,
        httpx.Client(
            base_url=restarted.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as api,
    ):
        job = wait_for_job(api, job_id, timeout=300)
    assert job["attempts"] == 2
    assert job["progress"]["start_step"] == saved_step  # resumed, not started over
    resumed = level0(JobPaths.of(data_dir, job_id).zarr)

    reference = tmp_path / "reference.ome.zarr"
    synthesize(SynthSpec(str(model), 64, 48, seed=11, steps=steps, tile=0), reference)
    np.testing.assert_array_equal(resumed, level0(reference))


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def test_viewer_in_headless_chromium(served, finished, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(
            "no browser: Debian's chromium is not installed at /usr/bin/chromium "
            "(apt-get install chromium)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright Python package is not installed"
    )
    server, _, _ = served
    job, pixels = finished
    if not (load_config().openseadragon_dir / "openseadragon.min.js").is_file():
        pytest.skip("OpenSeadragon is not installed: run `npm ci` in the repository root")
    problems: list[str] = []
    tile_statuses: list[int] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on(
                "response", lambda r: tile_statuses.append(r.status) if "_files/" in r.url else None
            )
            page.on(
                "response",
                lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            page.goto(server.url + job["links"]["viewer"])  # signed link, no token
            page.wait_for_function(
                "document.getElementById('state').textContent === 'succeeded'", timeout=20_000
            )
            page.wait_for_selector("#slide canvas", timeout=20_000)
            shot = tmp_path / "viewer.png"
            for _ in range(40):  # until tiles are drawn
                page.locator("#slide").screenshot(path=str(shot))
                canvas = np.asarray(Image.open(shot).convert("RGB")).astype(float)
                if (canvas.min(axis=2) < 235).mean() > 0.3:
                    break
                page.wait_for_timeout(250)
            provenance = page.locator("#provenance").inner_text()
        finally:
            browser.close()
    assert tile_statuses and set(tile_statuses) == {200}
    assert not problems, problems
    assert job["provenance"]["checkpoint_sha256"][:16] in provenance
    drawn = canvas.min(axis=2) < 235  # not white background
    assert drawn.mean() > 0.3, f"the viewer shows almost nothing: {shot}"
    rows, cols = np.nonzero(drawn)
    region = canvas[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert region.std() > 10, "the slide area is uniform"
    shown_mean = region.reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(shown_mean, pixels.reshape(3, -1).mean(axis=1), atol=25)
    red, green, blue = shown_mean
    assert red > green and blue > green, f"not H&E-like colours: {shown_mean} ({shot})"


@pytest.mark.slow
def test_load_tiles_and_submissions(served):
    """Many concurrent clients on loopback, bounded in time: tile latency, jobs accepted/s.

    Tiles first cold (each of the top three levels' tiles once, rendered from the
    pyramid), then warm (random tiles for a few seconds), then job submissions. Prints
    the figures (run with -s); fails on any error answer or a stall.
    """
    server, _, data_dir = served
    load_token = add_token(data_dir, "load", max_concurrent=100_000)
    slide = finished_job(data_dir, load_token, 2048, 2048)
    dz = DeepZoomGenerator(open_slide(JobPaths.of(data_dir, slide).zarr))
    urls = [
        f"/v1/slides/{slide}_files/{level}/{col}_{row}.jpeg"
        for level in range(dz.level_count - 3, dz.level_count)
        for col in range(dz.level_tiles[level][0])
        for row in range(dz.level_tiles[level][1])
    ]
    clients = 32

    async def measure(next_request) -> tuple[list[float], float]:
        """Run `clients` loops of next_request(api, rng) (None: stop); latencies and wall."""

        async def client_loop(api: httpx.AsyncClient, seed: int) -> list[float]:
            latencies, rng = [], random.Random(seed)
            while (request := next_request(api, rng)) is not None:
                start = time.perf_counter()
                response = await request
                latencies.append(time.perf_counter() - start)
                assert response.status_code in (200, 202), response.text
            return latencies

        async with httpx.AsyncClient(
            base_url=server.url,
            timeout=30,
            headers={"Authorization": f"Bearer {load_token}"},
            limits=httpx.Limits(max_connections=clients),
        ) as api:
            start = time.perf_counter()
            per_client = await asyncio.gather(*(client_loop(api, i) for i in range(clients)))
            return [x for xs in per_client for x in xs], time.perf_counter() - start

    def for_seconds(seconds: float, make):
        deadline = time.perf_counter() + seconds
        return lambda api, rng: make(api, rng) if time.perf_counter() < deadline else None

    cold_urls = iter(urls)
    cold = asyncio.run(
        measure(lambda api, rng: api.get(u) if (u := next(cold_urls, None)) else None)
    )
    warm = asyncio.run(measure(for_seconds(3.0, lambda api, rng: api.get(rng.choice(urls)))))
    jobs = asyncio.run(
        measure(
            for_seconds(
                1.5,
                lambda api, rng: api.post(
                    "/v1/jobs",
                    json={
                        "model": MICRO_MODEL,
                        "width": 16,
                        "height": 16,
                        "steps": 1,
                        "tile": 0,
                        "seed": rng.randrange(1000),
                    },
                ),
            )
        )
    )
    for name, (latencies, wall) in (
        ("tiles cold", cold),
        ("tiles warm", warm),
        ("jobs accepted", jobs),
    ):
        p50, p99 = np.percentile(latencies, [50, 99]) * 1000
        print(
            f"\nLOAD {name}: {len(latencies)} requests from {clients} clients in {wall:.1f} s"
            f" = {len(latencies) / wall:.0f}/s; latency p50 {p50:.0f} ms, p99 {p99:.0f} ms",
            end="",
        )
    print()
    assert max(cold[0] + warm[0]) < 30  # a stall, not a figure
    with httpx.Client(
        base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {load_token}"}
    ) as api:
        cursor = None
        while True:  # leave no queue behind for other tests
            page = api.get(
                "/v1/jobs", params={"limit": 100, **({"cursor": cursor} if cursor else {})}
            ).json()
            for job in page["jobs"]:
                if job["state"] in ("queued", "running"):
                    api.delete(f"/v1/jobs/{job['id']}")
            cursor = page["next_cursor"]
            if cursor is None:
                break
