"""Viewer links of a lifetime their minter chooses, and the short tile signatures the
viewer page renews within it: POST /v1/jobs/{id}/links with the owner's token,
GET /v1/jobs/{id}/tile-signature with the link. In-process app, real slides on disk.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs

import pytest
from fastapi.testclient import TestClient

from gigasynth.errors import GigasynthError
from gigasynth_service.app import create_app
from gigasynth_service.config import load_config
from tests.service_fixtures import (
    add_token,
    finished_job,
    service_config,
    write_micro_model,
)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def params(query: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(query).items()}


@pytest.fixture
def api(tmp_path):
    """(client, data dir, token): the app in-process, no job runner."""
    data_dir = tmp_path / "data"
    write_micro_model(data_dir)  # records mpp 0.5
    token = add_token(data_dir, "alice", max_concurrent=10)
    config = service_config(data_dir, link_ttl_s=60, link_max_ttl_s=600, tile_ttl_s=30)
    with TestClient(create_app(config, run_jobs=False)) as client:
        yield client, data_dir, token


# ---- links of a chosen lifetime; tile signatures that never outlive them ----


def test_links_last_as_chosen_and_tile_signatures_never_past_them(api):
    client, data_dir, token = api
    job_id = finished_job(data_dir, token, 300, 200)
    minted = client.post(f"/v1/jobs/{job_id}/links", headers=auth(token), json={"ttl_s": 3})
    assert minted.status_code == 201, minted.text
    link = minted.json()
    assert abs(link["expires"] - (time.time() + 3)) < 2
    assert params(link["query"])["exp"] == str(link["expires"])
    assert client.get(link["viewer"]).status_code in (200, 503)  # 503: no OpenSeadragon
    assert client.get(link["status"]).json()["id"] == job_id
    default = client.post(f"/v1/jobs/{job_id}/links", headers=auth(token)).json()
    assert abs(default["expires"] - (time.time() + 60)) < 2  # GIGASYNTH_LINK_TTL_S
    too_long = client.post(f"/v1/jobs/{job_id}/links", headers=auth(token), json={"ttl_s": 601})
    assert too_long.status_code == 422 and "600 s" in too_long.json()["error"]
    assert (
        client.post(
            f"/v1/jobs/{job_id}/links", headers=auth(token), json={"ttl_s": "1 week"}
        ).status_code
        == 422
    )
    # Only a token mints links: a link cannot, and cannot extend itself.
    assert (
        client.post(f"/v1/jobs/{job_id}/links?{link['query']}", json={"ttl_s": 600}).status_code
        == 401
    )

    tiles = client.get(f"/v1/jobs/{job_id}/tile-signature?{link['query']}")
    assert tiles.status_code == 200, tiles.text
    signature = tiles.json()
    # Capped by the link (3 s, its expiry rounded up to a whole second), not 30 s.
    assert signature["expires_in_s"] <= signature["link_expires_in_s"] <= 4
    assert params(signature["query"])["exp"] == str(link["expires"])
    assert client.get(f"/v1/slides/{job_id}.dzi?{signature['query']}").status_code == 200
    assert (
        client.get(f"/v1/slides/{job_id}_files/9/0_0.jpeg?{signature['query']}").status_code == 200
    )
    # A tile signature opens tiles only: not the status, the page, downloads or a renewal.
    for url in (
        f"/v1/jobs/{job_id}",
        f"/view/{job_id}",
        f"/v1/jobs/{job_id}/tile-signature",
        f"/v1/jobs/{job_id}/download?format=ome-zarr",
    ):
        response = client.get(f"{url}{'&' if '?' in url else '?'}{signature['query']}")
        assert response.status_code == 401, (url, response.text)
    by_token = client.get(f"/v1/jobs/{job_id}/tile-signature", headers=auth(token)).json()
    assert 25 <= by_token["expires_in_s"] <= 31 and by_token["link_expires_in_s"] is None
    other = finished_job(data_dir, token, 64, 64)  # one job's, not another's
    assert client.get(f"/v1/slides/{other}.dzi?{signature['query']}").status_code == 401

    time.sleep(max(0.0, link["expires"] + 1.1 - time.time()))  # the link has ended
    ended = client.get(f"/v1/jobs/{job_id}/tile-signature?{link['query']}")
    assert ended.status_code == 401 and "expired" in ended.json()["error"]
    assert client.get(f"/v1/slides/{job_id}.dzi?{signature['query']}").status_code == 401


def test_links_end_with_their_token(tmp_path):
    data_dir = tmp_path / "data"
    write_micro_model(data_dir)
    token = add_token(data_dir, "short", expires=time.time() + 40)
    with TestClient(create_app(service_config(data_dir), run_jobs=False)) as client:
        job_id = finished_job(data_dir, token, 300, 200)
        link = client.post(
            f"/v1/jobs/{job_id}/links", headers=auth(token), json={"ttl_s": 3600}
        ).json()
        assert link["expires"] <= time.time() + 40  # not past the token's expiry
        svc = client.app.state.services
        svc.store.revoke_token(svc.store.job(job_id).token_id)
        response = client.get(f"/v1/jobs/{job_id}/tile-signature?{link['query']}")
        assert response.status_code == 401 and "revoked" in response.json()["error"]


def test_link_lifetimes_are_configured_consistently():
    config = load_config(
        {
            "GIGASYNTH_LINK_TTL_S": "600",
            "GIGASYNTH_LINK_MAX_TTL_S": "86400",
            "GIGASYNTH_TILE_TTL_S": "5",
        }
    )
    assert (config.link_ttl_s, config.link_max_ttl_s, config.tile_ttl_s) == (600, 86400, 5)
    assert load_config({}).link_max_ttl_s == 7 * 86400  # a week unless set
    with pytest.raises(
        GigasynthError, match="GIGASYNTH_LINK_TTL_S=700 exceeds GIGASYNTH_LINK_MAX_TTL_S=600"
    ):
        load_config({"GIGASYNTH_LINK_TTL_S": "700", "GIGASYNTH_LINK_MAX_TTL_S": "600"})
