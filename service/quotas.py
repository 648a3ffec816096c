"""Admission of a job: the deployment's limits and the token's quotas, then the engine's
check of the job (gigasynth.synth.check_job, the one owner of job validity).

Everything that would make the engine refuse a job is refused here, before the job is
accepted, so a client learns about it from the POST (4xx) rather than from a failed job.
The service adds only its own policy (GIGASYNTH_MAX_SIDE, _MAX_MEGAPIXELS, _MAX_STEPS),
the token's quotas and the disk check; whatever the model or the engine would refuse is
check_job's to say, in its words (they name the request's fields).

The order keeps refusals cheap: arithmetic limits and the token's quotas first (a few
comparisons and one indexed count), then the model and check_job (its tile plan is
arithmetic too, so its cost does not grow with the slide). No lock is
held here: the concurrency quota is checked again where the job is inserted, in the
same store transaction (`JobStore.add_job(max_active=...)`).
"""

from __future__ import annotations

from collections.abc import Collection

from gigasynth.errors import GigasynthError
from gigasynth.synth import Job, check_job
from gigasynth.synth.preflight import DiskShortage, check_disk, estimate, gb
from gigasynth_service.catalog import ModelCatalog, ModelEntry
from gigasynth_service.config import ServiceConfig
from gigasynth_service.errors import ApiError
from gigasynth_service.schemas import JobRequest
from gigasynth_service.spec import synth_spec
from gigasynth_service.store import JobStore, TokenRecord


def admit(
    request: JobRequest,
    token: TokenRecord,
    config: ServiceConfig,
    catalog: ModelCatalog,
    store: JobStore,
    uncounted: Collection[str] = (),
) -> ModelEntry:
    """The model the job will use, or an ApiError saying why the job is refused.

    `uncounted`: ids of the token's jobs that ended but whose end the store has not
    recorded yet (they hold no slot).
    """
    for side, value in (("width", request.width), ("height", request.height)):
        if value > config.max_side:
            raise ApiError(
                422, f"{side} {value} exceeds this service's limit of {config.max_side} px"
            )
    megapixels = request.width * request.height / 1e6
    if megapixels > config.max_megapixels:
        raise ApiError(
            422,
            f"{request.width}x{request.height} is {megapixels:,.2f} megapixels, "
            f"over this service's limit of {config.max_megapixels:,g}",
        )
    if request.steps is not None and request.steps > config.max_steps:
        raise ApiError(
            422, f"steps {request.steps} exceeds this service's limit of {config.max_steps}"
        )
    if megapixels > token.max_megapixels:
        raise ApiError(
            403,
            f"quota exceeded: {megapixels:,.2f} megapixels per job requested, "
            f"this token allows {token.max_megapixels:,g}",
        )
    active = store.active_count(token.id, uncounted)
    if active >= token.max_concurrent:
        raise concurrency_refusal(active, token)
    try:
        model = catalog.get(request.model)
    except GigasynthError as exc:
        raise ApiError(422, str(exc)) from None
    try:  # whatever the engine would refuse (model fit, sizes, tile plan), refused now
        job = check_job(
            synth_spec(request.model_dump(), model.ref, config.save_every),
            catalog.checkpoint(model),
            model=f"model {model.name!r}",
        )
    except GigasynthError as exc:
        raise ApiError(422, str(exc)) from None
    _check_disk(request, job, config)
    return model


def _check_disk(request: JobRequest, job: Job, config: ServiceConfig) -> None:
    """507 when the job's state and outputs would not fit on the disks as free now (the
    engine's preflight; jobs already queued are not counted against the space)."""
    jobs = config.data_dir / "jobs"
    tiff = jobs / "slide.ome.tiff" if "ome-tiff" in request.formats else None
    needs = estimate(job, job.spec.tiff_compression if tiff is not None else None)
    try:
        check_disk(needs, config.work_dir or jobs, jobs, tiff)
    except DiskShortage as short:
        raise ApiError(
            507,
            f"not enough disk space on the server for a "
            f"{request.width}x{request.height} slide: it needs "
            f"{gb(short.needed)}, {gb(short.free)} free",
        ) from None


def concurrency_refusal(active: int, token: TokenRecord) -> ApiError:
    """The 429 for a token that has `active` jobs queued or running, its limit."""
    return ApiError(
        429,
        f"quota exceeded: {active} jobs queued or running, this token "
        f"allows {token.max_concurrent} at a time",
        headers={"Retry-After": "30"},
    )
