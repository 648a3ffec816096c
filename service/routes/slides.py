"""`/v1/slides`: DeepZoom descriptors and tiles of finished jobs (ETag, Cache-Control).

HTTP only: the DZI, the tile grid and the tiles are `gigasynth.io.DeepZoomGenerator`'s;
`gigasynth_service.slides` caches them.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request, Response

from gigasynth.errors import GigasynthError
from gigasynth.io import DeepZoomGenerator
from gigasynth_service.auth import readable_job
from gigasynth_service.context import Services, Svc
from gigasynth_service.errors import ApiError
from gigasynth_service.openapi import errors, signed_link
from gigasynth_service.paths import JobPaths
from gigasynth_service.slides import etag
from gigasynth_service.store import JobRecord

router = APIRouter(prefix="/v1/slides", tags=["slides"])

CACHE_CONTROL = "private, max-age=86400, immutable"

# OpenAPI: conditional requests, the validators sent back, and what a slide request answers.
_IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "an ETag from an earlier answer: 304 while it still holds",
}
_CACHE_HEADERS = {
    name: {"schema": {"type": "string"}, "required": True} for name in ("ETag", "Cache-Control")
}


def _slide_responses(media_type: str, not_found: str) -> dict[int | str, dict]:
    return {
        200: {"content": {media_type: {"schema": {"type": "string"}}}, "headers": _CACHE_HEADERS},
        304: {
            "description": "not modified: the If-None-Match ETag still holds",
            "headers": _CACHE_HEADERS,
        },
        **errors(401, 404, 409, 410, notes={404: not_found}),
    }


# ASCII digits only: str.isdigit() and \d also take '¹' or '٣', which int() refuses or reads.
_LEVEL = re.compile(r"[0-9]{1,3}")
_TILE_NAME = re.compile(r"([0-9]{1,9})_([0-9]{1,9})\.jpeg")


def _finished_slide(request: Request, job_id: str, svc: Services) -> tuple[JobRecord, JobPaths]:
    job = readable_job(request, job_id, svc, tiles=True)
    if job.state != "succeeded":
        raise ApiError(409, f"slide {job.id} is not ready: the job is {job.state}")
    paths = JobPaths.of(svc.config.data_dir, job.id)
    if not paths.zarr.is_dir():
        raise ApiError(410, f"the pyramid of job {job.id} is gone")
    return job, paths


def _generator(job: JobRecord, paths: JobPaths, svc: Services) -> DeepZoomGenerator:
    """The job's DeepZoom generator; 410 when its pyramid can no longer be read."""
    try:
        return svc.tiles.generator(job.id, paths.zarr)
    except GigasynthError as exc:
        raise ApiError(410, str(exc)) from None


def _not_modified(request: Request, tag: str) -> Response | None:
    """A 304 when the client already holds this version."""
    held = (t.strip() for t in request.headers.get("if-none-match", "").split(","))
    if tag in held:
        return Response(status_code=304, headers={"ETag": tag, "Cache-Control": CACHE_CONTROL})
    return None


def _cached(tag: str, body: bytes, media_type: str) -> Response:
    return Response(
        body, media_type=media_type, headers={"ETag": tag, "Cache-Control": CACHE_CONTROL}
    )


@router.get(
    "/{job_id}.dzi",
    response_class=Response,
    openapi_extra=signed_link(_IF_NONE_MATCH),
    responses=_slide_responses("application/xml", "no such job"),
)
def dzi(job_id: str, request: Request, svc: Svc) -> Response:
    """The DeepZoom descriptor (size, tile size 254, overlap 1, JPEG)."""
    job, paths = _finished_slide(request, job_id, svc)
    generator = _generator(job, paths, svc)
    tag = etag(job.id, job.finished or 0.0, "dzi")
    return _not_modified(request, tag) or _cached(
        tag, generator.get_dzi().encode(), "application/xml"
    )


@router.get(
    "/{job_id}_files/{level}/{tile_name}",
    response_class=Response,
    openapi_extra=signed_link(_IF_NONE_MATCH),
    responses=_slide_responses(
        "image/jpeg",
        "no such job, or no such tile: a "
        "level or column/row outside the pyramid, "
        "or a name not LEVEL/COL_ROW.jpeg",
    ),
)
def tile(job_id: str, level: str, tile_name: str, request: Request, svc: Svc) -> Response:
    """One JPEG tile `{col}_{row}.jpeg` of a DeepZoom level; 404 outside the pyramid."""
    job, paths = _finished_slide(request, job_id, svc)
    match = _TILE_NAME.fullmatch(tile_name)
    if _LEVEL.fullmatch(level) is None or match is None:
        raise ApiError(
            404, f"no such tile: {level[:20]}/{tile_name[:40]} (expected LEVEL/COL_ROW.jpeg)"
        )
    lvl, col, row = int(level), int(match.group(1)), int(match.group(2))
    try:
        _generator(job, paths, svc).check_tile(lvl, (col, row))
    except GigasynthError as exc:
        raise ApiError(404, str(exc)) from None
    tag = etag(job.id, job.finished or 0.0, lvl, col, row)
    unchanged = _not_modified(request, tag)
    if unchanged is not None:
        return unchanged
    data = svc.tiles.tile(job.id, paths.zarr, lvl, col, row)
    svc.metrics.tiles_served.inc()
    return _cached(tag, data, "image/jpeg")
