"""DeepZoom descriptors, tiles, signed links and downloads over HTTP, from a pyramid written
with zarr (the DeepZoom geometry itself is tested with the library, in tests/test_io.py)."""

from __future__ import annotations

import io
import re
import time
import zipfile
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import zarr
from fastapi.testclient import TestClient
from PIL import Image

from gigasynth.io import DeepZoomGenerator, open_slide
from gigasynth_service.app import create_app
from gigasynth_service.paths import JobPaths
from tests.service_fixtures import (
    add_token,
    finished_job,
    service_config,
    tissue_rgb,
    write_micro_model,
)

W, H = 700, 500


@pytest.fixture
def slide(tmp_path):
    """(client, data dir, token, id of a finished 700 x 500 job with OME-Zarr and OME-TIFF)."""
    data_dir = tmp_path / "data"
    write_micro_model(data_dir)
    token = add_token(data_dir, "alice", max_concurrent=5)
    job_id = finished_job(data_dir, token, W, H, formats=("ome-zarr", "ome-tiff"))
    with TestClient(create_app(service_config(data_dir), run_jobs=False)) as client:
        yield client, data_dir, token, job_id


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def jpeg(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(int)


def test_dzi_and_tiles_match_the_pyramid(slide):
    client, data_dir, token, job_id = slide
    response = client.get(f"/v1/slides/{job_id}.dzi", headers=auth(token))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert re.search(r'TileSize="254"', response.text) and 'Overlap="1"' in response.text
    assert '<Size Width="700" Height="500"/>' in response.text
    level0 = np.moveaxis(tissue_rgb(W, H), 0, -1).astype(int)
    full = jpeg(client.get(f"/v1/slides/{job_id}_files/10/2_1.jpeg", headers=auth(token)))
    assert full.shape == (247, 193, 3)
    assert np.abs(full - level0[253:500, 507:700]).mean() < 6  # JPEG error only
    stored1 = zarr.open_array(str(JobPaths.of(data_dir, job_id).zarr / "0" / "1"))[:]
    half = jpeg(client.get(f"/v1/slides/{job_id}_files/9/0_0.jpeg", headers=auth(token)))
    assert half.shape == (250, 255, 3)
    assert np.abs(half - np.moveaxis(stored1, 0, -1)[:250, :255]).mean() < 6
    coarse = jpeg(client.get(f"/v1/slides/{job_id}_files/5/0_0.jpeg", headers=auth(token)))
    assert coarse.shape == (16, 22, 3)  # 700/32, 500/32 rounded up
    assert abs(coarse.mean() - level0.mean()) < 8  # a shrunken copy of the whole slide
    assert jpeg(client.get(f"/v1/slides/{job_id}_files/0/0_0.jpeg", headers=auth(token))).shape == (
        1,
        1,
        3,
    )
    # the service serves the library's DZI and tiles byte for byte
    with open_slide(JobPaths.of(data_dir, job_id).zarr) as reader:
        library = DeepZoomGenerator(reader)
        assert response.text == library.get_dzi()
        for level, col, row in [(10, 2, 1), (9, 0, 0), (5, 0, 0), (0, 0, 0)]:
            served = client.get(
                f"/v1/slides/{job_id}_files/{level}/{col}_{row}.jpeg", headers=auth(token)
            )
            assert served.content == library.get_tile_bytes(level, (col, row))


def test_etag_and_cache_headers(slide):
    client, _, token, job_id = slide
    url = f"/v1/slides/{job_id}_files/10/1_1.jpeg"
    first = client.get(url, headers=auth(token))
    tag = first.headers["etag"]
    assert "max-age" in first.headers["cache-control"]
    assert client.get(url, headers=auth(token)).headers["etag"] == tag
    assert (
        client.get(f"/v1/slides/{job_id}_files/10/0_1.jpeg", headers=auth(token)).headers["etag"]
        != tag
    )
    again = client.get(url, headers={**auth(token), "If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    dzi = client.get(f"/v1/slides/{job_id}.dzi", headers=auth(token))
    assert (
        client.get(
            f"/v1/slides/{job_id}.dzi",
            headers={**auth(token), "If-None-Match": dzi.headers["etag"]},
        ).status_code
        == 304
    )


OUTSIDE = [
    ("11/0_0.jpeg", "level 11 is outside the pyramid (0..10)"),
    ("10/3_0.jpeg", "tile 3_0 is outside level 10 (3 columns x 2 rows)"),
    ("10/0_2.jpeg", "tile 0_2 is outside level 10"),
    ("8/1_0.jpeg", "tile 1_0 is outside level 8 (1 columns x 1 rows)"),
    ("x/0_0.jpeg", "no such tile"),
    ("10/-1_0.jpeg", "no such tile"),
    ("10/0_0.png", "no such tile"),
    ("10/0_0.jpeg.jpeg", "no such tile"),
    ("99999/0_0.jpeg", "no such tile"),
]


def test_tiles_outside_the_pyramid_are_404(slide):
    client, _, token, job_id = slide
    for path, message in OUTSIDE:
        response = client.get(f"/v1/slides/{job_id}_files/{path}", headers=auth(token))
        assert response.status_code == 404, path
        assert message in response.json()["error"], path


def test_signed_links(slide):
    client, _, token, job_id = slide
    view = client.get(f"/v1/jobs/{job_id}", headers=auth(token)).json()
    dzi_link = view["links"]["dzi"]
    assert client.get(dzi_link).status_code == 200  # no header needed
    query = dzi_link.split("?", 1)[1]
    tile = client.get(f"/v1/slides/{job_id}_files/10/0_0.jpeg?{query}")
    assert tile.status_code == 200
    assert client.get(f"/v1/jobs/{job_id}?{query}").json()["id"] == job_id
    assert client.get(view["links"]["viewer"]).status_code in (200, 503)
    params = {k: v[0] for k, v in parse_qs(urlsplit(dzi_link).query).items()}
    tampered = {**params, "sig": params["sig"][:-1] + ("0" if params["sig"][-1] != "0" else "1")}
    assert (
        "signature does not match"
        in client.get(f"/v1/slides/{job_id}.dzi", params=tampered).json()["error"]
    )
    later = {**params, "exp": str(int(params["exp"]) + 1)}
    assert client.get(f"/v1/slides/{job_id}.dzi", params=later).status_code == 401
    svc = client.app.state.services
    minted = svc.signer.query(job_id, svc.store.job(job_id).token_id, now=time.time() - 7200)
    expired = dict(p.split("=") for p in minted.split("&"))
    response = client.get(f"/v1/slides/{job_id}.dzi", params=expired)
    assert response.status_code == 401 and "expired" in response.json()["error"]
    other = finished_job(client.app.state.services.config.data_dir, token, 64, 64)
    response = client.get(f"/v1/slides/{other}.dzi?{query}")  # a link is for one job
    assert response.status_code == 401
    # a link only reads: it cannot cancel, delete or list
    assert client.delete(f"/v1/jobs/{job_id}?{query}").status_code == 401
    assert client.get(f"/v1/jobs?{query}").status_code == 401


def test_slide_of_an_unfinished_job_is_409(slide):
    client, _, token, _ = slide
    job_id = client.post(
        "/v1/jobs",
        headers=auth(token),
        json={"model": "micro", "width": 96, "height": 80, "steps": 2, "tile": 64},
    ).json()["id"]
    response = client.get(f"/v1/slides/{job_id}.dzi", headers=auth(token))
    assert response.status_code == 409 and "not ready" in response.json()["error"]
    response = client.get(
        f"/v1/jobs/{job_id}/download", params={"format": "ome-zarr"}, headers=auth(token)
    )
    assert response.status_code == 409 and "queued" in response.json()["error"]


def test_downloads(slide):
    client, data_dir, token, job_id = slide
    response = client.get(
        f"/v1/jobs/{job_id}/download", params={"format": "ome-zarr"}, headers=auth(token)
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert f"gigasynth-{job_id}.ome.zarr.zip" in response.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    extracted = data_dir.parent / "unzipped"
    archive.extractall(extracted)
    level0 = zarr.open_array(str(extracted / f"gigasynth-{job_id}.ome.zarr" / "0" / "0"))[:]
    np.testing.assert_array_equal(level0, tissue_rgb(W, H))
    tiff = client.get(
        f"/v1/jobs/{job_id}/download", params={"format": "ome-tiff"}, headers=auth(token)
    )
    assert tiff.status_code == 200
    assert tiff.content == JobPaths.of(data_dir, job_id).ome_tiff.read_bytes()
    missing = client.get(
        f"/v1/jobs/{job_id}/download", params={"format": "preview"}, headers=auth(token)
    )
    assert missing.status_code == 404 and "did not produce preview" in missing.json()["error"]
    bad = client.get(f"/v1/jobs/{job_id}/download", params={"format": "tar"}, headers=auth(token))
    assert bad.status_code == 422 and "format" in bad.json()["error"]


def test_viewer_page(slide):
    client, _, token, job_id = slide
    page = client.get(f"/view/{job_id}", headers=auth(token))
    osd = client.app.state.services.config.openseadragon_dir / "openseadragon.min.js"
    if not osd.is_file():
        assert page.status_code == 503 and "npm ci" in page.json()["error"]
        return
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert f'data-job="{job_id}"' in page.text
    assert re.search(r'data-query="exp=\d+&amp;sig=[0-9a-f]{64}"', page.text)
    script = client.get("/static/openseadragon/openseadragon.min.js")
    assert script.status_code == 200 and b"OpenSeadragon" in script.content[:2000]
    assert client.get("/static/viewer/viewer.js").status_code == 200
    assert client.get("/static/openseadragon/images/zoomin_rest.png").status_code == 200
