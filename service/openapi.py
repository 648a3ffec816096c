"""The OpenAPI schema served at /openapi.json: every status an operation answers.

Errors are documented with the one body the API sends, `{"error": "..."}` (ErrorBody),
through `errors(...)` in each route's `responses=`. FastAPI's own 422 model
(HTTPValidationError, `{"detail": [...]}`) is never sent (service/errors.py answers
validation errors with ErrorBody), so it is taken out of the schema: a route that can
refuse its parameters documents its 422 itself. Authentication: a bearer token on every
operation but /healthz; the operations that read one job also take that job's signed
link (`exp` and `sig` query parameters), which is what a browser's viewer uses.
"""

from __future__ import annotations

from typing import Any

import annotated_types
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gigasynth_service.config import ServiceConfig
from gigasynth_service.schemas import ErrorBody, JobRequest, LinkRequest

# What each error status means, as the API uses it (the README's "Service" section).
MEANINGS: dict[int, str] = {
    400: "malformed request body: not JSON, not a JSON object, or missing",
    401: "missing, malformed, unknown, revoked or expired API token (or signed link)",
    403: "refused by the token's quota: the job is larger than the token allows",
    404: "no such job: unknown, a malformed id, or another token's job",
    409: "the job has not succeeded (yet): there is nothing to serve",
    410: "the job's output files are gone",
    413: "request body larger than the service's limit (GIGASYNTH_MAX_BODY_BYTES)",
    415: "an upload's Content-Type is not one taken, or its bytes are not that type",
    422: "invalid or out-of-limit parameters",
    429: "the token already has as many jobs queued or running as it may",
    503: "the job store cannot record changes right now (e.g. a full disk): try again later",
}

_STRING = {"type": "string"}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": '`Bearer realm="gigasynth"`',
            "schema": _STRING,
            "required": True,
        }
    },
    429: {
        "Retry-After": {
            "description": "seconds to wait before submitting again",
            "schema": _STRING,
            "required": True,
        }
    },
    503: {
        "Retry-After": {
            "description": "seconds to wait (when the job store is full)",
            "schema": _STRING,
        }
    },
}

BEARER = "bearerToken"
LINK = "signedLink"
SECURITY_SCHEMES: dict[str, Any] = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "description": "an API token from `gigasynth token create` "
        "(`Authorization: Bearer gst_...`)",
    },
    LINK: {
        "type": "apiKey",
        "in": "query",
        "name": "sig",
        "description": "a job's signed link, `?exp=...&sig=...`, as found in the job's "
        "`links` (viewer, dzi): read access to that one job until `exp`, "
        "while the token that signed it stays valid",
    },
}

LINK_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "exp",
        "in": "query",
        "required": False,
        "schema": _STRING,
        "description": "signed link: expiry, Unix seconds (up to 12 ASCII digits); with `sig`, "
        "instead of a bearer token, and ignored when a token is sent",
    },
    {
        "name": "sig",
        "in": "query",
        "required": False,
        "schema": _STRING,
        "description": "signed link: HMAC-SHA256 signature, 64 lowercase hex digits; with `exp`",
    },
]


def errors(*statuses: int, notes: dict[int, str] | None = None) -> dict[int | str, Any]:
    """`responses=` entries for the error statuses a route answers, each with ErrorBody.

    `notes` replaces the generic meaning of a status with what it means for this route.
    """
    notes = notes or {}
    out: dict[int | str, Any] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "model": ErrorBody,
            "description": notes.get(status, MEANINGS[status]),
        }
        if status in _HEADERS:
            entry["headers"] = _HEADERS[status]
        out[status] = entry
    return out


def signed_link(*parameters: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra=` of an operation that a job's signed link may call instead of a
    token: the link's query parameters (plus `parameters`) and either credential."""
    return {"parameters": [*LINK_PARAMETERS, *parameters], "security": [{BEARER: []}, {LINK: []}]}


PUBLIC: dict[str, Any] = {"security": []}  # `openapi_extra=` of an operation without auth
_REF = "#/components/schemas/"


def _error_bodies(schema: dict[str, Any]) -> None:
    """Every error response as JSON ErrorBody, and FastAPI's default 422 (`detail`,
    HTTPValidationError) removed wherever it added one.

    FastAPI files an error model under the route's own media type (text/html for the
    viewer, image/jpeg for tiles), but errors are always JSON.
    """
    error_body = {"application/json": {"schema": {"$ref": _REF + ErrorBody.__name__}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            default = responses.get("422", {}).get("content", {}).get("application/json", {})
            if default.get("schema", {}).get("$ref") == _REF + "HTTPValidationError":
                del responses["422"]
            for status, response in responses.items():
                if int(status) >= 400:
                    response["content"] = error_body
    models = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        models.pop(name, None)


# What a client (or a stateful fuzzer) can do with the id of a job it submitted.
_JOB_OPERATIONS = (
    ("GetJob", "/v1/jobs/{job_id}", "get"),
    ("CancelOrDeleteJob", "/v1/jobs/{job_id}", "delete"),
    ("RetryJob", "/v1/jobs/{job_id}/retry", "post"),
    ("DownloadJob", "/v1/jobs/{job_id}/download", "get"),
    ("SlideDescriptor", "/v1/slides/{job_id}.dzi", "get"),
    ("ViewJob", "/view/{job_id}", "get"),
    ("JobLayout", "/v1/jobs/{job_id}/layout", "get"),
)


def _job_links(schema: dict[str, Any]) -> None:
    """OpenAPI links from a submitted job (POST /v1/jobs, 202) to the operations on it."""
    paths = schema.get("paths", {})
    submitted = paths.get("/v1/jobs", {}).get("post", {}).get("responses", {}).get("202")
    if submitted is None:
        return
    submitted["links"] = {
        name: {
            "operationId": paths[path][method]["operationId"],
            "parameters": {"job_id": "$response.body#/id"},
        }
        for name, path, method in _JOB_OPERATIONS
        if method in paths.get(path, {})
    }


def _integer_bounds(schema: dict[str, Any], config: ServiceConfig) -> None:
    """The bounds of the request bodies' integer fields, exact (pydantic writes them as
    floats: 2^63 - 1 became 2^63, a seed the server refuses) and tightened to the limits
    this deployment's settings enforce: a job's width and height (GIGASYNTH_MAX_SIDE)
    and steps (GIGASYNTH_MAX_STEPS), a link's `ttl_s` (GIGASYNTH_LINK_MAX_TTL_S)."""
    deployment = {
        ("JobRequest", "width"): config.max_side,
        ("JobRequest", "height"): config.max_side,
        ("JobRequest", "steps"): config.max_steps,
        ("LinkRequest", "ttl_s"): config.link_max_ttl_s,
    }
    for model in (JobRequest, LinkRequest):
        properties = schema["components"]["schemas"][model.__name__]["properties"]
        for name, field in model.model_fields.items():
            bounds = {}
            for rule in field.metadata:
                if isinstance(rule, annotated_types.Ge):
                    bounds["minimum"] = int(rule.ge)  # type: ignore[call-overload]
                elif isinstance(rule, annotated_types.Le):
                    bounds["maximum"] = int(rule.le)  # type: ignore[call-overload]
            if (model.__name__, name) in deployment:
                limit = deployment[model.__name__, name]
                bounds["maximum"] = min(limit, bounds.get("maximum", limit))
            prop = properties[name]
            for branch in prop.get("anyOf", [prop]):
                if branch.get("type") == "integer":
                    branch.update(bounds)


def install_openapi(app: FastAPI) -> None:
    """Give `app` the schema generator described above (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            _error_bodies(schema)
            _job_links(schema)
            _integer_bounds(schema, app.state.services.config)
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            schema["security"] = [{BEARER: []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
