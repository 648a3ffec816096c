"""Security of the HTTP service: odd input is 4xx JSON, metrics stay bounded, links cannot
renew themselves and die with their token, tokens can be listed, revoked and expire, the
signing key is long enough, the access log holds no secrets, the data dir is private.

Through the ASGI client except the last test, which runs a real `gigasynth serve`.
"""

from __future__ import annotations

import calendar
import os
import random
import re
import stat
import string
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from gigasynth.cli import main as cli
from gigasynth.errors import GigasynthError
from gigasynth_service.app import create_app
from gigasynth_service.config import load_config
from gigasynth_service.store import JobStore
from gigasynth_service.tokens import create_token
from tests.service_fixtures import (
    MICRO_MODEL,
    OPERATOR,
    add_token,
    finished_job,
    running_server,
    service_config,
    wait_for_job,
    write_micro_model,
)


@pytest.fixture
def app(tmp_path):
    """(client, data dir, token, id of a finished 300 x 200 job); OpenSeadragon stands in."""
    data_dir = tmp_path / "data"
    write_micro_model(data_dir)
    token = add_token(data_dir, "alice", max_concurrent=5)
    job_id = finished_job(data_dir, token, 300, 200)
    osd = tmp_path / "osd"
    osd.mkdir()
    (osd / "openseadragon.min.js").write_text("/* OpenSeadragon stand-in */")
    config = service_config(data_dir, openseadragon_dir=osd)
    with TestClient(create_app(config, run_jobs=False), raise_server_exceptions=False) as client:
        yield client, data_dir, token, job_id


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_of(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]


def link_params(link: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}


def test_unicode_digits_and_signatures_are_4xx_json(app):
    client, _, token, job_id = app
    for query in (
        "exp=%C2%B2&sig=x",  # '²'.isdigit(), int('²') raises
        "exp=1&sig=%C3%A9",  # compare_digest refuses non-ASCII str
        "exp=%D9%A3&sig=" + "0" * 64,  # Arabic-Indic 3: a digit to int()
        "exp=99999999999&sig=" + "%C3%A9" * 64,
        "exp=-1&sig=" + "0" * 64,
    ):
        assert "signed link" in error_of(client.get(f"/v1/jobs/{job_id}?{query}"), 401), query
        assert "signed link" in error_of(client.get(f"/v1/slides/{job_id}.dzi?{query}"), 401)
    for path in ("%C2%B9/0_0.jpeg", "%D9%A3/0_0.jpeg", "9/%D9%A0_0.jpeg", "9/0_%C2%B2.jpeg"):
        response = client.get(f"/v1/slides/{job_id}_files/{path}", headers=auth(token))
        assert "no such tile" in error_of(response, 404), path


def test_missing_openseadragon_is_503_json(app, tmp_path):
    client, data_dir, token, job_id = app
    config = service_config(data_dir, openseadragon_dir=tmp_path / "not-installed")
    with TestClient(create_app(config, run_jobs=False), raise_server_exceptions=False) as bare:
        for path in ("openseadragon.min.js", "images/zoomin_rest.png"):
            assert "npm ci" in error_of(bare.get(f"/static/openseadragon/{path}"), 503)
        assert "npm ci" in error_of(bare.get(f"/view/{job_id}", headers=auth(token)), 503)
    assert client.get("/static/openseadragon/openseadragon.min.js").status_code == 200


def _series(metrics_text: str) -> set[str]:
    return set(
        re.findall(
            r"^gigasynth_http_request_duration_seconds_count(\{.*\})", metrics_text, re.MULTILINE
        )
    )


def test_metrics_labels_are_bounded(app):
    client, _, token, _ = app
    rng = random.Random(7)

    def noise() -> str:
        return "".join(rng.choices(string.ascii_uppercase + string.digits, k=10))

    def request(i: int) -> None:
        path = "/healthz" if i % 2 else f"/{noise().lower()}/{noise()}?q={noise()}"
        assert 400 <= client.request(f"M{noise()}", path).status_code < 500

    request(0), request(1)  # each kind of request once
    client.get("/metrics", headers=auth(OPERATOR))  # the scrape itself, once
    first = client.get("/metrics", headers=auth(OPERATOR)).text
    for i in range(300):
        request(i)
    after = client.get("/metrics", headers=auth(OPERATOR)).text
    assert _series(after) == _series(first)
    assert {'method="other"', 'route="unmatched"', 'route="/healthz"', 'status="405"'} <= {
        label for series in _series(first) for label in series.strip("{}").split(",")
    }
    assert len(after) < len(first) + 2000  # counts grow, not the series


def test_a_link_cannot_renew_itself(app):
    client, _, token, job_id = app
    minted = client.get(f"/v1/jobs/{job_id}", headers=auth(token)).json()["links"]
    query = minted["dzi"].split("?", 1)[1]
    time.sleep(1.1)  # a renewal would now sign a later exp
    by_link = client.get(f"/v1/jobs/{job_id}?{query}")
    assert by_link.status_code == 200
    links = by_link.json()["links"]
    assert links["dzi"] == minted["dzi"] and links["viewer"] == minted["viewer"]
    page = client.get(f"/view/{job_id}?{query}")
    assert page.status_code == 200
    assert f'data-query="{query.replace("&", "&amp;")}"' in page.text
    again = client.get(f"/v1/jobs/{job_id}", headers=auth(token)).json()["links"]
    assert int(link_params(again["dzi"])["exp"]) > int(link_params(minted["dzi"])["exp"])


def test_revoked_or_expired_tokens_and_their_links_stop(app):
    client, data_dir, token, job_id = app
    link = client.get(f"/v1/jobs/{job_id}", headers=auth(token)).json()["links"]["dzi"]
    assert client.get(link).status_code == 200
    assert cli(["token", "revoke", "alice", "--data-dir", str(data_dir)]) == 0
    assert error_of(client.get("/v1/jobs", headers=auth(token)), 401) == "API token revoked"
    assert "token revoked" in error_of(client.get(link), 401)
    assert "token revoked" in error_of(client.get(f"/view/{job_id}?{link.split('?')[1]}"), 401)

    store = JobStore(data_dir / "jobs.sqlite3")
    try:
        brief, _ = create_token(store, "brief", expires=time.time() + 1.5)
    finally:
        store.close()
    other = finished_job(data_dir, brief, 64, 64)
    link = client.get(f"/v1/jobs/{other}", headers=auth(brief)).json()["links"]["dzi"]
    assert client.get(link).status_code == 200
    time.sleep(1.6)
    assert error_of(client.get("/v1/jobs", headers=auth(brief)), 401) == "API token expired"
    assert "token expired" in error_of(client.get(link), 401)


def test_token_list_revoke_and_expiry_cli(tmp_path, capsys):
    data_dir = str(tmp_path / "data")
    assert (
        cli(["token", "create", "--name", "alice", "--data-dir", data_dir, "--expires-in", "30d"])
        == 0
    )
    secret = capsys.readouterr().out.strip()
    assert (
        cli(
            [
                "token",
                "create",
                "--name",
                "bob",
                "--data-dir",
                data_dir,
                "--expires",
                "2099-01-31T18:00:00+01:00",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert cli(["token", "list", "--data-dir", data_dir]) == 0
    listing = capsys.readouterr().out
    assert secret not in listing and "gst_" not in listing
    rows = {line.split()[0]: line.split() for line in listing.splitlines()[1:]}
    assert set(rows) == {"alice", "bob"}
    assert rows["bob"][3] == "2099-01-31T17:00:00Z" and rows["bob"][4] == "active"
    alice_expires = calendar.timegm(time.strptime(rows["alice"][3], "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(alice_expires - (time.time() + 30 * 86_400)) < 120
    assert cli(["token", "revoke", rows["bob"][1], "--data-dir", data_dir]) == 0  # by id
    capsys.readouterr()
    cli(["token", "list", "--data-dir", data_dir])
    assert re.search(r"^bob .* revoked \d{4}-", capsys.readouterr().out, re.MULTILINE)
    for args, problem in (
        (["revoke", "carol"], "no token named or with id 'carol'"),
        (["create", "--name", "x", "--expires-in", "3x"], "not a duration"),
        (["create", "--name", "x", "--expires", "yesterday"], "ISO 8601"),
        (["create", "--name", "x", "--expires", "2001-01-01"], "future"),
    ):
        assert cli(["token", *args, "--data-dir", data_dir]) == 2
        err = capsys.readouterr().err
        assert problem in err and err.count("\n") == 1, err


def test_signing_keys_under_32_bytes_are_refused(tmp_path, capsys):
    fresh = tmp_path / "fresh"
    create_app(service_config(fresh), run_jobs=False)
    key_file = fresh / "signing.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert re.fullmatch(rb"[0-9a-f]{64}", key_file.read_bytes())
    for content in (b"", b"\n", b"k" * 31 + b"\n"):
        key_file.write_bytes(content)
        with pytest.raises(GigasynthError, match=r"signing key from .*signing.key is \d+ bytes"):
            create_app(service_config(fresh), run_jobs=False)
    with pytest.raises(ValidationError, match="at least 32"):  # the settings' own check
        service_config(tmp_path / "other", signing_key=b"k" * 31)
    with pytest.raises(GigasynthError, match="at least 32"):
        load_config({"GIGASYNTH_SIGNING_KEY": "k" * 31})
    key_file.write_bytes(b"")
    umask = os.umask(0o022)
    try:  # the server refuses to start, in one line
        assert cli(["serve", "--data-dir", str(fresh), "--port", "9"]) == 2
    finally:
        os.umask(umask)
    err = capsys.readouterr().err
    assert "signing.key is 0 bytes; at least 32" in err and err.count("\n") == 1, err


def test_served_access_log_redacted_data_dir_private_revocation_live(tmp_path):
    """A real server started under umask 022: it computes a job, a link is used, the token
    is revoked while it runs; its log holds no sig, and nothing in the data dir is
    readable by group or others."""
    umask = os.umask(0o022)
    try:
        data_dir = tmp_path / "data"
        models = write_micro_model(tmp_path / "operator").parent
        token = add_token(data_dir, "alice", max_concurrent=5)
        env = {"GIGASYNTH_MODELS_DIR": str(models)}
        with (
            running_server(data_dir, env, log_level="info") as server,
            httpx.Client(base_url=server.url, headers=auth(token), timeout=30) as api,
            httpx.Client(base_url=server.url, timeout=30) as browser,
        ):
            submitted = api.post(
                "/v1/jobs",
                json={
                    "model": MICRO_MODEL,
                    "width": 96,
                    "height": 80,
                    "steps": 2,
                    "tile": 64,
                    "formats": ["ome-tiff", "preview"],
                },
            )
            assert submitted.status_code == 202, submitted.text
            job = wait_for_job(api, submitted.json()["id"])
            link = job["links"]["dzi"]
            sig = link_params(link)["sig"]
            assert browser.get(link).status_code == 200
            assert (
                browser.get(
                    f"/v1/slides/{job['id']}_files/0/0_0.jpeg?{link.split('?')[1]}"
                ).status_code
                == 200
            )
            assert browser.get(f"/v1/jobs/{job['id']}?token={token}&sig={sig}").status_code == 401
            assert cli(["token", "revoke", "alice", "--data-dir", str(data_dir)]) == 0
            assert api.get("/v1/jobs").status_code == 401  # at once, no restart
            assert "revoked" in browser.get(link).json()["error"]
        log = server.log.read_text()
        assert f"/v1/slides/{job['id']}.dzi?" in log  # the access log is on
        assert sig not in log and token not in log and token[4:] not in log
        assert "sig=REDACTED" in log
        exposed = [
            f"{oct(stat.S_IMODE(p.stat().st_mode))} {p.relative_to(data_dir)}"
            for p in [data_dir, *data_dir.rglob("*")]
            if p.stat().st_mode & 0o077
        ]
        assert exposed == []
        assert (data_dir / "jobs" / job["id"] / "slide.ome.tiff").is_file()
    finally:
        os.umask(umask)
