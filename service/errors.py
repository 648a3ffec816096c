"""JSON errors: every failure the client can cause is a 4xx `{"error": "..."}` naming it.

Handlers turn ApiError, request-validation errors, Starlette's own HTTP errors (unknown
route, wrong method) and GigasynthError into that shape; a job store that cannot be
written (a full disk) is a 503 to try again later; anything else is a logged 500 that
reveals no internals.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gigasynth.errors import GigasynthError
from gigasynth_service.store import StoreUnavailable

log = logging.getLogger("gigasynth.service")


class ApiError(Exception):
    """An error answered with `status` and a one-line message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _allowed_methods(request: Request) -> str | None:
    """The methods the API documents at the request's path, for a 405's Allow header:
    Starlette names only those of the first route there (GET for /v1/jobs/{id}, though
    DELETE works too). None for a path the schema does not list."""
    for template, operations in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)), request.url.path):
            return ", ".join(sorted(method.upper() for method in operations))
    return None


def _describe(errors: list[dict]) -> tuple[int, str]:
    """(status, one line) for pydantic's error list: 400 for unparsable JSON, else 422."""
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = errors[0].get("ctx", {}).get("error", "")
        return 400, f"malformed JSON body{': ' + detail if detail else ''}"
    whole_body = [e for e in errors if tuple(e.get("loc", ())) == ("body",)]
    if whole_body:
        if whole_body[0].get("type") == "missing":
            return 400, "missing JSON request body"
        return 400, "the request body must be a JSON object (Content-Type: application/json)"
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        if err.get("type") == "extra_forbidden":
            parts.append(f"unknown field {where!r}")
        elif err.get("type") == "missing":
            parts.append(f"missing field {where!r}")
        else:
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return 422, "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _describe(list(exc.errors()))
        return error_response(status, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 404 and message == "Not Found":
            message = "no such resource"
        allowed = _allowed_methods(request) if exc.status_code == 405 else None
        if allowed:
            headers = {**(headers or {}), "Allow": allowed}
        return error_response(exc.status_code, message, headers)

    @app.exception_handler(StoreUnavailable)
    async def _store_unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        log.error("%s", exc)
        return error_response(
            503,
            "the server cannot record changes right now (its job "
            "store is not writable); try again later",
            {"Retry-After": "30"},
        )

    @app.exception_handler(GigasynthError)
    async def _gigasynth(_: Request, exc: GigasynthError) -> JSONResponse:
        return error_response(422, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error")
