"""The OpenAPI schema (/openapi.json) documents what the API really answers.

Every error is documented with the one body the API sends (`{"error": "..."}`), never
FastAPI's `detail` model; the bearer scheme and the signed-link parameters are described;
and a request that draws each status from the running app gets a status its operation
documents. tools/openapi_fuzz.sh runs schemathesis against a real server for more.
"""

from __future__ import annotations

import io
import json
import re
import shutil

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from gigasynth_service.app import create_app
from gigasynth_service.paths import JobPaths
from tests.conftest import ROOT
from tests.service_fixtures import (
    MICRO_MODEL,
    add_token,
    finished_job,
    service_config,
    write_micro_model,
)

JOB = {"model": MICRO_MODEL, "width": 96, "height": 80, "steps": 3, "tile": 64}
ERROR_REF = "#/components/schemas/ErrorBody"
# Operations that read one job and so also take its signed link instead of a token.
LINK_OPERATIONS = {
    ("get", "/v1/jobs/{job_id}"),
    ("get", "/v1/jobs/{job_id}/download"),
    ("get", "/v1/slides/{job_id}.dzi"),
    ("get", "/v1/slides/{job_id}_files/{level}/{tile_name}"),
    ("get", "/view/{job_id}"),
    ("get", "/v1/jobs/{job_id}/tile-signature"),
    ("get", "/v1/jobs/{job_id}/layout"),
}


@pytest.fixture
def api(tmp_path):
    """(client, data dir, token (2 megapixels, 1 job at a time)); OpenSeadragon absent."""
    data_dir = tmp_path / "data"
    write_micro_model(data_dir)
    token = add_token(data_dir, "alice", max_megapixels=2.0, max_concurrent=1)
    config = service_config(
        data_dir, max_body_bytes=2048, openseadragon_dir=tmp_path / "no-openseadragon"
    )
    with TestClient(create_app(config, run_jobs=False)) as client:
        yield client, data_dir, token


def operations(schema: dict) -> dict[tuple[str, str], dict]:
    return {
        (method, path): op for path, ops in schema["paths"].items() for method, op in ops.items()
    }


def schema_of(client: TestClient, token: str) -> dict:
    response = client.get("/openapi.json", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()


def test_errors_are_documented_with_the_error_body(api):
    client, _, token = api
    schema = schema_of(client, token)
    body = schema["components"]["schemas"]["ErrorBody"]
    assert body["required"] == ["error"] and set(body["properties"]) == {"error"}
    assert body["properties"]["error"]["type"] == "string"
    assert body["additionalProperties"] is False
    ops = operations(schema)
    assert len(ops) >= 11
    for (method, path), op in ops.items():
        errors = {s: r for s, r in op["responses"].items() if int(s) >= 400}
        if path != "/healthz":
            assert "401" in errors, (method, path)
        for status, response in errors.items():
            assert response["content"] == {"application/json": {"schema": {"$ref": ERROR_REF}}}, (
                method,
                path,
                status,
            )
            assert response["description"], (method, path, status)
        if "requestBody" in op:
            assert {"400", "413", "422"} <= set(errors), (method, path)
        if any(p["name"] == "job_id" for p in op.get("parameters", [])):
            assert "404" in errors, (method, path)
    submit = ops[("post", "/v1/jobs")]["responses"]
    assert {"202", "400", "401", "403", "413", "422", "429", "503"} <= set(submit)
    assert "Retry-After" in submit["429"]["headers"]
    assert submit["202"]["links"]["GetJob"]["parameters"] == {"job_id": "$response.body#/id"}


def test_no_validation_detail_model(api):
    client, _, token = api
    schema = schema_of(client, token)
    text = json.dumps(schema)
    assert "HTTPValidationError" not in text and "ValidationError" not in text
    assert '"detail"' not in text


def test_bearer_scheme_and_signed_link_parameters(api):
    client, _, token = api
    schema = schema_of(client, token)
    schemes = schema["components"]["securitySchemes"]
    bearer = [name for name, s in schemes.items() if s == {**s, "type": "http", "scheme": "bearer"}]
    assert len(bearer) == 1
    assert schema["security"] == [{bearer[0]: []}]
    # The query parameters auth reads for a link, however many it grows: all documented.
    read = set(
        re.findall(r"query_params\.get\(\"(\w+)\"\)", (ROOT / "service" / "auth.py").read_text())
    )
    assert {"exp", "sig"} <= read
    for key, op in operations(schema).items():
        query = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "query"}
        if key in LINK_OPERATIONS:
            assert read <= set(query), key
            assert all(
                not query[name]["required"] and query[name]["description"] for name in read
            ), key
            assert {bearer[0]: []} in op["security"] and len(op["security"]) == 2, key
        else:
            assert not read & set(query), key
    assert operations(schema)[("get", "/healthz")]["security"] == []


def test_every_status_the_api_answers_is_documented(api):
    """Draw each status from the app and check its operation documents it (with the error
    body for an error): the schema tells the truth, not just something schema-shaped."""
    client, data_dir, token = api
    schema = schema_of(client, token)
    ops = operations(schema)
    templates = [
        (re.compile(re.sub(r"\\{\w+\\}", "[^/]+", re.escape(path))), path)
        for path in schema["paths"]
    ]
    h = {"Authorization": f"Bearer {token}"}
    seen: set[tuple[str, str, int]] = set()

    def check(method: str, url: str, status: int, **kwargs) -> dict | None:
        response = client.request(method, url, **kwargs)
        assert response.status_code == status, (method, url, response.text)
        path = next(p for rx, p in templates if rx.fullmatch(url.split("?")[0]))
        assert str(status) in ops[(method.lower(), path)]["responses"], (method, path, status)
        seen.add((method, path, status))
        if status >= 400:
            assert response.headers["content-type"] == "application/json"
            assert set(response.json()) == {"error"}
        return response.json() if "json" in response.headers.get("content-type", "") else None

    done = finished_job(data_dir, token, 300, 200)
    check("GET", "/metrics", 401)
    check("GET", "/v1/models", 401, headers={"Authorization": "Bearer gst_nope"})
    check("POST", "/v1/jobs", 400, headers=h)
    check(
        "POST", "/v1/jobs", 400, headers={**h, "Content-Type": "application/json"}, content=b"{bad"
    )
    check("POST", "/v1/jobs", 413, headers=h, json={**JOB, "model": "m" * 3000})
    check("POST", "/v1/jobs", 422, headers=h, json={**JOB, "colour": "pink"})
    check("POST", "/v1/jobs", 422, headers=h, json={**JOB, "model": "nope"})
    check("POST", "/v1/jobs", 403, headers=h, json={**JOB, "width": 2000, "height": 2000})
    queued = check("POST", "/v1/jobs", 202, headers=h, json=JOB)["id"]
    check("POST", "/v1/jobs", 429, headers=h, json=JOB)
    check("GET", "/v1/jobs", 422, headers=h, params={"limit": 0})
    check("GET", f"/v1/jobs/{'0' * 32}", 404, headers=h)
    check("GET", f"/v1/jobs/{queued}?exp=1&sig=00", 401)
    check("GET", f"/v1/jobs/{queued}/download", 422, headers=h, params={"format": "svs"})
    check("GET", f"/v1/jobs/{queued}/download", 409, headers=h, params={"format": "ome-zarr"})
    check("GET", f"/v1/jobs/{done}/download", 404, headers=h, params={"format": "ome-tiff"})
    check("GET", f"/v1/slides/{queued}.dzi", 409, headers=h)
    etag = client.get(f"/v1/slides/{done}.dzi", headers=h).headers["etag"]
    check("GET", f"/v1/slides/{done}.dzi", 304, headers={**h, "If-None-Match": etag})
    check("GET", f"/v1/slides/{done}_files/0/0_0.jpeg", 200, headers=h)
    check("GET", f"/v1/slides/{done}_files/0/5_5.jpeg", 404, headers=h)
    check("GET", f"/view/{queued}", 503, headers=h)
    link = check("POST", f"/v1/jobs/{done}/links", 201, headers=h, json={"ttl_s": 60})
    check("POST", f"/v1/jobs/{done}/links", 422, headers=h, json={"ttl_s": 0})
    check("POST", f"/v1/jobs/{done}/links", 401, json={"ttl_s": 60})
    check("POST", f"/v1/jobs/{'0' * 32}/links", 404, headers=h)
    check("GET", f"/v1/jobs/{done}/tile-signature?{link['query']}", 200)
    check("GET", f"/v1/jobs/{done}/tile-signature", 401)
    check("GET", f"/v1/jobs/{'0' * 32}/tile-signature", 404, headers=h)
    check("GET", f"/v1/jobs/{done}/layout", 404, headers=h)  # not a cascade job
    png = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 90, 150)).save(png, format="PNG")
    as_png = {**h, "Content-Type": "image/png"}
    check("POST", "/v1/layouts", 201, headers=as_png, content=png.getvalue())
    check("POST", "/v1/layouts", 200, headers=as_png, content=png.getvalue())
    check("POST", "/v1/layouts", 400, headers=as_png, content=b"")
    check("POST", "/v1/layouts", 415, headers={**h, "Content-Type": "text/plain"}, content=b"x")
    check("POST", "/v1/layouts", 422, headers=as_png, content=b"\x89PNG\r\n\x1a\nbroken")
    check("GET", "/v1/layouts", 200, headers=h)
    check("DELETE", f"/v1/layouts/{'0' * 64}", 404, headers=h)
    check("DELETE", f"/v1/jobs/{queued}", 202, headers=h)
    shutil.rmtree(JobPaths.of(data_dir, done).zarr)
    check("GET", f"/v1/slides/{done}.dzi", 410, headers=h)
    check("GET", f"/v1/jobs/{done}/download", 410, headers=h, params={"format": "ome-zarr"})
    check("DELETE", f"/v1/jobs/{done}", 204, headers=h)
    check("DELETE", f"/v1/jobs/{done}", 404, headers=h)
    assert len({(m, p) for m, p, _ in seen}) >= 10
    # A method a path does not serve: 405 naming every method it does.
    response = client.request("OPTIONS", f"/v1/jobs/{queued}", headers=h)
    assert response.status_code == 405 and set(response.json()) == {"error"}
    assert response.headers["allow"] == "DELETE, GET"
