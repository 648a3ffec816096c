"""`/v1/jobs`: submit, list, status, cancel or delete, retry, download, a cascade job's
layout."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Annotated, Literal, cast

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from gigasynth.cascade import layout as cascade_layout
from gigasynth.decoding import read_header
from gigasynth.errors import GigasynthError
from gigasynth_service.auth import ReadAccess, Token, owned_job, read_access, readable_job
from gigasynth_service.context import Services, Svc
from gigasynth_service.download import zip_stream
from gigasynth_service.errors import ApiError
from gigasynth_service.layouts import LayoutFile, copy_to_job, layout_file, no_such_layout
from gigasynth_service.openapi import errors, signed_link
from gigasynth_service.paths import JobPaths, new_job_id
from gigasynth_service.quotas import admit, concurrency_refusal
from gigasynth_service.schemas import JobList, JobRequest, JobView, Progress, State
from gigasynth_service.spec import provenance
from gigasynth_service.store import RETRYABLE_STATES, ActiveLimit, JobRecord, StateConflict

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

DOWNLOADS = {
    "ome-tiff": "application/octet-stream",
    "ome-zarr": "application/zip",
    "preview": "image/png",
}


def job_view(job: JobRecord, svc: Services, access: ReadAccess | None = None) -> JobView:
    """A stored job as the API shows it, with links (viewer and tiles signed for a while).

    Shown to its owner's token (access None or by token) the links are newly signed; shown
    through a signed link they carry that same link, so a link cannot renew itself.
    """
    progress = job.progress or {}
    result = job.result or {}
    signed = (access or ReadAccess(job, None)).signed_query(svc)
    links = {"self": f"/v1/jobs/{job.id}", "viewer": f"/view/{job.id}?{signed}"}
    if job.request.get("layout") is not None:
        links["layout"] = f"/v1/jobs/{job.id}/layout?{signed}"
    if job.state == "succeeded":
        links["dzi"] = f"/v1/slides/{job.id}.dzi?{signed}"
        for fmt in result.get("formats", []):
            links[f"download:{fmt}"] = f"/v1/jobs/{job.id}/download?format={fmt}"
    throughput = result.get("mpx_steps_per_s", progress.get("mpx_steps_per_s"))
    return JobView(
        id=job.id,
        state=cast(State, job.state),  # the store keeps only these states
        cancel_requested=job.cancel_requested,
        request=JobRequest.model_validate(job.request),
        created=job.created,
        started=job.started,
        finished=job.finished,
        attempts=job.attempts,
        progress=Progress(**{k: progress[k] for k in Progress.model_fields if k in progress})
        if job.progress
        else None,
        throughput_mpx_steps_per_s=throughput,
        eta_s=progress.get("eta_s") if job.state == "running" else None,
        error=job.error,
        provenance=provenance(job, svc.catalog),
        links=links,
    )


@router.post(
    "",
    status_code=202,
    response_model=JobView,
    responses={
        202: {
            "headers": {
                "Location": {
                    "description": "the job's URL",
                    "schema": {"type": "string"},
                    "required": True,
                }
            }
        },
        **errors(
            400,
            401,
            403,
            413,
            422,
            429,
            503,
            404,
            notes={
                404: "no such layout: the job names a layout this token has not uploaded "
                "(or one deleted meanwhile)",
                422: "invalid job: unknown model, cascade or field, a value out "
                "of this service's limits, a layout the decoding rules refuse, or a "
                "size, tile or resolution (mpp) the model or one of the cascade's "
                "stages cannot make",
                503: "the job store cannot record changes, or the server's decode memory "
                "is taken by other layouts (Retry-After)",
            },
        ),
    },
)
def submit(body: JobRequest, response: Response, token: Token, svc: Svc) -> JobView:
    """Accept a job (202) after checking limits, the model or cascade (with its layout)
    and the token's quotas."""
    request = body.model_dump()
    request["formats"] = sorted(set(body.formats) | {"ome-zarr"})
    upload = None
    if body.layout is not None:  # known by its record; decoded only once admission allows
        record = svc.store.layout(token.id, body.layout)
        if record is None:
            raise no_such_layout(body.layout)
        path = layout_file(svc.config.data_dir, token.id, body.layout)
        upload = LayoutFile(body.layout, path, record.width, record.height)
    uncounted = svc.runner.unrecorded()
    with ExitStack() as held:  # a decoded layout's memory, reserved until its copy is written
        admitted = admit(
            body, token, svc.config, svc.catalog, svc.store, uncounted, upload, svc.decodes, held
        )
        request.update(width=admitted.width, height=admitted.height)
        job_id = new_job_id()
        paths = JobPaths.of(svc.config.data_dir, job_id)
        try:
            if admitted.layout is not None:  # the job's own copy: it runs on and shows that
                copy_to_job(admitted.layout, paths.layout)
            job = svc.store.add_job(job_id, token.id, request, token.max_concurrent, uncounted)
        except ActiveLimit as exc:  # another request took the last slot meanwhile
            paths.remove()
            raise concurrency_refusal(exc.active, token) from None
        except BaseException:
            paths.remove()
            raise
    svc.runner.enqueue(job.id)
    svc.metrics.jobs_submitted.inc()
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job_view(job, svc)


@router.get("", response_model=JobList, responses=errors(401, 422))
def list_jobs(
    token: Token,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=18, pattern=r"^\d+$")] = None,
) -> JobList:
    """The token's jobs, newest first; pass `next_cursor` back as `cursor` for the next page."""
    jobs = svc.store.jobs_of(token.id, limit, int(cursor) if cursor else None)
    next_cursor = str(jobs[-1].seq) if len(jobs) == limit else None
    return JobList(jobs=[job_view(j, svc) for j in jobs], next_cursor=next_cursor)


@router.get(
    "/{job_id}", response_model=JobView, openapi_extra=signed_link(), responses=errors(401, 404)
)
def status(job_id: str, request: Request, svc: Svc) -> JobView:
    """State, progress, throughput and ETA (by token, or by the job's signed link)."""
    access = read_access(request, job_id, svc)
    return job_view(access.job, svc, access)


@router.delete(
    "/{job_id}",
    response_model=None,
    status_code=202,
    responses={
        202: {"model": JobView, "description": "cancelling a queued or running job"},
        204: {"description": "a finished job and its files deleted"},
        **errors(401, 404, 503),
    },
)
def cancel_or_delete(job_id: str, token: Token, svc: Svc) -> JobView | Response:
    """Cancel a queued or running job (202, partial state kept for a retry); delete a
    finished one and its files (204)."""
    job = owned_job(job_id, token, svc)
    if job.active:
        svc.runner.cancel(job.id)
        return job_view(svc.store.job(job.id) or job, svc)
    svc.store.delete_job(job.id)
    svc.tiles.forget(job.id)
    JobPaths.of(svc.config.data_dir, job.id).remove()
    return Response(status_code=204)


@router.post(
    "/{job_id}/retry",
    status_code=202,
    response_model=JobView,
    responses={
        202: {
            "headers": {
                "Location": {
                    "description": "the job's URL",
                    "schema": {"type": "string"},
                    "required": True,
                }
            }
        },
        **errors(
            401,
            403,
            404,
            409,
            422,
            429,
            503,
            notes={
                409: "the job is not failed or cancelled",
                422: "the job no longer fits this service's limits or models",
            },
        ),
    },
)
def retry(job_id: str, response: Response, token: Token, svc: Svc) -> JobView:
    """Queue a failed or cancelled job again (202): it resumes from its last saved step.

    Admitted like a new submission (limits and the token's quotas); 409 for a job in
    any other state.
    """
    job = owned_job(job_id, token, svc)
    if job.state not in RETRYABLE_STATES:
        raise ApiError(
            409, f"job {job.id} is {job.state}; only a failed or cancelled job can be retried"
        )
    uncounted = svc.runner.unrecorded()
    layout = None
    if job.request.get("layout") is not None:  # its own copy, whatever became of the upload
        path = JobPaths.of(svc.config.data_dir, job.id).layout
        try:
            header = read_header(path, "its copy", cascade_layout.MAX_LAYOUT_PIXELS)
        except GigasynthError:
            raise ApiError(422, f"job {job.id}'s copy of its layout is gone") from None
        layout = LayoutFile(job.request["layout"], path, header.width, header.height)
    request = JobRequest.model_validate(job.request)
    with ExitStack() as held:
        admit(
            request, token, svc.config, svc.catalog, svc.store, uncounted, layout, svc.decodes, held
        )
    try:
        job = svc.store.requeue(job.id, token.max_concurrent, uncounted)
    except ActiveLimit as exc:
        raise concurrency_refusal(exc.active, token) from None
    except StateConflict as exc:
        raise ApiError(
            409, f"job {job.id} is {exc}; only a failed or cancelled job can be retried"
        ) from None
    svc.runner.enqueue(job.id)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job_view(job, svc)


@router.get(
    "/{job_id}/download",
    response_model=None,
    openapi_extra=signed_link(),
    responses={
        200: {
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}} for t in DOWNLOADS.values()
            }
        },
        **errors(
            401, 404, 409, 410, 422, notes={404: "no such job, or the job did not make this format"}
        ),
    },
)
def download(
    job_id: str,
    request: Request,
    format: Annotated[Literal["ome-tiff", "ome-zarr", "preview"], Query()],
    svc: Svc,
) -> Response:
    """The finished slide as OME-TIFF, zipped OME-Zarr or a PNG preview, streamed."""
    job = readable_job(request, job_id, svc)
    if job.state != "succeeded":
        raise ApiError(409, f"job {job.id} is {job.state}; downloads exist once it succeeded")
    formats = (job.result or {}).get("formats", [])
    if format not in formats:
        raise ApiError(
            404, f"job {job.id} did not produce {format} (it made: {', '.join(formats)})"
        )
    paths = JobPaths.of(svc.config.data_dir, job.id)
    name = f"gigasynth-{job.id}"
    if format == "ome-zarr":
        if not paths.zarr.is_dir():
            raise ApiError(410, f"the OME-Zarr of job {job.id} is gone")
        return StreamingResponse(
            zip_stream(paths.zarr, f"{name}.ome.zarr"),
            media_type=DOWNLOADS[format],
            headers={"Content-Disposition": f'attachment; filename="{name}.ome.zarr.zip"'},
        )
    path = paths.ome_tiff if format == "ome-tiff" else paths.preview
    if not path.is_file():
        raise ApiError(410, f"the {format} file of job {job.id} is gone")
    suffix = ".ome.tiff" if format == "ome-tiff" else ".png"
    return FileResponse(path, media_type=DOWNLOADS[format], filename=f"{name}{suffix}")


@router.get(
    "/{job_id}/layout",
    response_class=FileResponse,
    openapi_extra=signed_link(),
    responses={
        200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
        **errors(
            401, 404, 410, notes={404: "no such job, or the job is not a cascade job with a layout"}
        ),
    },
)
def job_layout(job_id: str, request: Request, svc: Svc) -> FileResponse:
    """The layout a cascade job started from, as PNG (its own copy, made at submission);
    the viewer shows it beside the slide."""
    job = readable_job(request, job_id, svc)
    if job.request.get("layout") is None:
        raise ApiError(404, f"job {job.id} has no layout: it is not a cascade job with one")
    path = JobPaths.of(svc.config.data_dir, job.id).layout
    if not path.is_file():
        raise ApiError(410, f"the layout of job {job.id} is gone")
    return FileResponse(
        path, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"}
    )
