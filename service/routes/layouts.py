"""`/v1/layouts`: upload the layout image a cascade job starts from; list and delete them.

An upload is the image's bytes as the request body, with its Content-Type (image/png,
image/jpeg or image/tiff); it is checked whole before anything is kept
(gigasynth_service.layouts) and is its token's, like a job: another token's layout is
the same 404 as an unknown one, and a token keeps at most GIGASYNTH_MAX_LAYOUTS.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from gigasynth_service.auth import Token
from gigasynth_service.context import Services, Svc
from gigasynth_service.errors import ApiError
from gigasynth_service.layouts import (
    MEDIA_TYPES,
    check_upload,
    is_layout_id,
    keep_upload,
    layout_file,
    media_type_of,
)
from gigasynth_service.openapi import errors
from gigasynth_service.schemas import LayoutList, LayoutView
from gigasynth_service.store import LayoutLimit, LayoutRecord, TokenRecord

router = APIRouter(prefix="/v1/layouts", tags=["layouts"])

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "the image's bytes (at most GIGASYNTH_MAX_LAYOUT_BYTES, and "
        "GIGASYNTH_MAX_LAYOUT_PIXELS pixels), at the first stage's input resolution of the "
        "cascade it is for",
        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in MEDIA_TYPES},
    }
}


def view(record: LayoutRecord) -> LayoutView:
    return LayoutView(
        id=record.id,
        media_type=record.media_type,
        width=record.width,
        height=record.height,
        bytes=record.bytes,
        created=record.created,
    )


def _keep(
    data: bytes, media_type: str, token: TokenRecord, svc: Services, arrived: float
) -> tuple[LayoutRecord, bool]:
    """Check and keep an upload (in a worker thread: decoding takes a while)."""
    checked = check_upload(data, media_type, svc.decodes, arrived)
    path = keep_upload(svc.config.data_dir, token.id, checked, data)
    record = LayoutRecord(
        token.id,
        checked.id,
        checked.media_type,
        checked.width,
        checked.height,
        checked.bytes,
        time.time(),
    )
    try:
        return svc.store.add_layout(record, svc.config.max_layouts)
    except LayoutLimit as exc:
        if svc.store.layout(token.id, checked.id) is None:
            path.unlink(missing_ok=True)
        raise ApiError(
            403,
            f"quota exceeded: {exc.kept} layouts kept, this service allows "
            f"{svc.config.max_layouts} per token; delete one (DELETE /v1/layouts/ID)",
        ) from None


@router.post(
    "",
    status_code=201,
    response_model=LayoutView,
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {"model": LayoutView, "description": "the same bytes were uploaded before"},
        **errors(
            400,
            401,
            403,
            413,
            415,
            422,
            503,
            notes={
                400: "the body is empty",
                403: "the token keeps as many layouts as it may",
                413: "the image is larger than GIGASYNTH_MAX_LAYOUT_BYTES",
                422: "not a readable image, truncated, several frames, a float or CMYK "
                "image, more pixels than GIGASYNTH_MAX_LAYOUT_PIXELS, or more memory to "
                "decode than GIGASYNTH_DECODE_MEMORY_MB",
                503: "the server's decode memory is taken by other uploads (Retry-After)",
            },
        ),
    },
)
async def upload(request: Request, response: Response, token: Token, svc: Svc) -> LayoutView:
    """Upload a layout image (201; 200 when the token uploaded the same bytes before): its
    id is the sha256 of the bytes; name it as a cascade job's `layout`."""
    media_type = media_type_of(request.headers.get("content-type"))
    data = await request.body()
    arrived = time.monotonic()  # a wait for a decode counts from here, thread queue included
    record, new = await run_in_threadpool(_keep, data, media_type, token, svc, arrived)
    response.status_code = 201 if new else 200
    return view(record)


@router.get("", response_model=LayoutList, responses=errors(401))
def list_layouts(token: Token, svc: Svc) -> LayoutList:
    """The token's layouts, newest first."""
    return LayoutList(layouts=[view(r) for r in svc.store.layouts_of(token.id)])


@router.delete(
    "/{layout_id}",
    status_code=204,
    response_class=Response,
    responses=errors(
        401, 404, 503, notes={404: "no such layout: unknown, a malformed id, or another token's"}
    ),
)
def delete(layout_id: str, token: Token, svc: Svc) -> Response:
    """Delete an uploaded layout (204). Jobs made from it keep their own copy."""
    if not is_layout_id(layout_id) or svc.store.layout(token.id, layout_id) is None:
        shown = layout_id if is_layout_id(layout_id) else "(malformed id)"
        raise ApiError(404, f"no such layout: {shown}")
    svc.store.delete_layout(token.id, layout_id)
    layout_file(svc.config.data_dir, token.id, layout_id).unlink(missing_ok=True)
    return Response(status_code=204)
