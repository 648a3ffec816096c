"""Health (public), metrics, the model catalog and the OpenAPI schema (token needed)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from gigasynth import __version__
from service.auth import Token
from service.context import Svc
from service.openapi import PUBLIC, errors
from service.schemas import ModelList

router = APIRouter()


@router.get("/healthz", tags=["system"], openapi_extra=PUBLIC)
def healthz(svc: Svc) -> dict[str, str]:
    """Liveness and readiness: the store answers. No token needed, nothing private shown."""
    svc.store.counts_by_state()
    return {"status": "ok", "version": __version__}


@router.get("/metrics", tags=["system"], response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
                       **errors(401)})
def metrics(_: Token,
            svc: Svc) -> Response:
    """Prometheus text: gigasynth_jobs{state}, tiles served, request latency histograms."""
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models", tags=["models"], response_model=ModelList, responses=errors(401))
def models(_: Token,
           svc: Svc) -> ModelList:
    """The models this service offers, by the names a job request uses."""
    return ModelList(models=[m.describe() for m in svc.catalog.entries()])


@router.get("/openapi.json", tags=["system"], include_in_schema=False)
def openapi(request: Request, _: Token) -> JSONResponse:
    """The OpenAPI schema of this API."""
    return JSONResponse(request.app.openapi())
