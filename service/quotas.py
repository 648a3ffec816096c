"""Admission of a job: the deployment's limits and the token's quotas, then the engine's
check of the job (gigasynth.synth.check_job, the one owner of job validity).

Everything that would make the engine refuse a job is refused here, before the job is
accepted, so a client learns about it from the POST (4xx) rather than from a failed job.
The service adds only its own policy (GIGASYNTH_MAX_SIDE, _MAX_MEGAPIXELS, _MAX_STEPS),
the token's quotas and the disk check; whatever the model or the engine would refuse is
check_job's to say, in its words (they name the request's fields).

The order keeps refusals cheap: arithmetic limits and the token's quotas first (a few
comparisons and one indexed count), then the model and check_job (its tile plan is
arithmetic too, so its cost does not grow with the slide). A layout is decoded only after
those checks passed on the smallest slide its header allows (its size times the smallest
factor of a stage it may enter), and the limits are checked again on the exact size. No lock is
held here: the concurrency quota is checked again where the job is inserted, in the
same store transaction (`JobStore.add_job(max_active=...)`).

A cascade job is admitted the same way at its final size (its layout's size times the
cascade's factor), then every stage is checked by the cascade's own precheck (check_job
per stage; its messages name the stage: "stage 2 of 2: ..."). Its disk need is left to
the engine's preflight when it runs (a failed job, not a 507).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gigasynth.cascade.definition import Cascade, Stage
from gigasynth.cascade.layout import layout_of
from gigasynth.cascade.synth import check_entry, check_stages, make_layout, stage_specs
from gigasynth.errors import GigasynthError
from gigasynth.synth import Job, SynthSpec, check_job
from gigasynth.synth.job import check_block_steps
from gigasynth.synth.preflight import DiskShortage, check_disk, estimate, gb
from gigasynth_service.catalog import CascadeEntry, ModelCatalog, ModelEntry, named
from gigasynth_service.config import ServiceConfig
from gigasynth_service.errors import ApiError
from gigasynth_service.layouts import DecodeBudget, LayoutFile
from gigasynth_service.runner import public_error, request_words
from gigasynth_service.schemas import JobRequest
from gigasynth_service.spec import cascade_settings, synth_spec
from gigasynth_service.store import JobStore, TokenRecord


@dataclass(frozen=True)
class Admission:
    """An admitted job: its model or cascade and the slide's size (a cascade with a
    layout: the size its stages make from the layout, and the layout's decoded pixels)."""

    entry: ModelEntry | CascadeEntry
    width: int
    height: int
    layout: np.ndarray | None = None


def admit(
    request: JobRequest,
    token: TokenRecord,
    config: ServiceConfig,
    catalog: ModelCatalog,
    store: JobStore,
    uncounted: Collection[str] = (),
    layout: LayoutFile | None = None,
    decodes: DecodeBudget | None = None,
    held: ExitStack | None = None,
) -> Admission:
    """The job's model or cascade and size, or an ApiError saying why it is refused.

    `uncounted`: ids of the token's jobs that ended but whose end the store has not
    recorded yet (they hold no slot). `layout`: the layout image the request names (given
    exactly when it names one), decoded within `decodes` once the cheap checks pass;
    its memory stays reserved until `held` closes.
    """
    if layout is not None:  # the layout and the cascade's stages fix the size
        entry = _cascade(request, catalog)
        factor = _least_factor(entry.cascade)
        _check_limits(request, layout.width * factor, layout.height * factor, token, config)
        _check_slots(token, store, uncounted)
        assert decodes is not None and held is not None
        rgb = layout.decode(decodes, held)
        plan = _plan(entry, rgb, request, config)
        width, height = plan.size
        if (request.width or width, request.height or height) != (width, height):
            raise ApiError(
                422,
                f"this layout makes a {width}x{height} px slide through cascade "
                f"{plan.entry.name!r}, not {request.width or width}x{request.height or height}: "
                "leave width and height out",
            )
        _check_limits(request, width, height, token, config)
        _check_plan(plan, config.block_steps)
        return Admission(plan.entry, width, height, rgb)
    if request.width is None or request.height is None:
        missing = "width" if request.width is None else "height"
        raise ApiError(422, f"invalid request: missing field {missing!r}")
    width, height = request.width, request.height
    _check_limits(request, width, height, token, config)
    _check_slots(token, store, uncounted)
    try:
        found = catalog.lookup(request.model)
    except GigasynthError as exc:
        raise ApiError(422, public_error(request_words(exc))) from None
    if isinstance(found, CascadeEntry):
        _check_plan(
            _plan(_cascade(request, catalog, found), None, request, config), config.block_steps
        )
        return Admission(found, width, height)
    try:  # whatever the engine would refuse (model fit, sizes, tile plan), refused now
        job = check_job(
            synth_spec(request.model_dump(), found.ref, config.save_every),
            catalog.checkpoint(found),
            model=f"model {found.name!r}",
        )
        if config.block_steps is not None:
            check_block_steps(job, config.block_steps)
    except GigasynthError as exc:
        raise ApiError(422, str(exc)) from None
    _check_disk(request, job, config)
    return Admission(found, width, height)


def _least_factor(cascade: Cascade) -> int:
    """The smallest factor from a layout to the slide among the stages a layout may
    enter (its kind is known only once decoded): the slide is at least that much larger."""
    factors = []
    for kind in ("mask", "image"):
        try:
            factors.append(cascade.entry_factor(kind))
        except GigasynthError:
            continue
    return min(factors, default=1)


def _check_limits(
    request: JobRequest, width: int, height: int, token: TokenRecord, config: ServiceConfig
) -> None:
    """The deployment's limits and the token's megapixel quota on a width x height slide
    (arithmetic only)."""
    for side, value in (("width", width), ("height", height)):
        if value > config.max_side:
            raise ApiError(
                422, f"{side} {value} exceeds this service's limit of {config.max_side} px"
            )
    megapixels = width * height / 1e6
    if megapixels > config.max_megapixels:
        raise ApiError(
            422,
            f"{width}x{height} is {megapixels:,.2f} megapixels, "
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


def _check_slots(token: TokenRecord, store: JobStore, uncounted: Collection[str]) -> None:
    """The token's concurrency quota (one indexed count)."""
    active = store.active_count(token.id, uncounted)
    if active >= token.max_concurrent:
        raise concurrency_refusal(active, token)


def _check_plan(plan: CascadePlan, block_steps: int | None) -> None:
    """Every stage of a cascade job as the engine will check it, before any work (with
    the runner's steps per task, `block_steps`)."""
    try:
        check_stages(plan.stages, plan.specs, block_steps)
    except GigasynthError as exc:
        message = named(request_words(exc), plan.entry.cascade.path, plan.entry.name)
        raise ApiError(422, public_error(message)) from None


@dataclass(frozen=True)
class CascadePlan:
    """A cascade job's stages that run (a layout may enter past the first) and their
    specs, as the engine will make them."""

    entry: CascadeEntry
    stages: Sequence[Stage]
    specs: list[SynthSpec]

    @property
    def size(self) -> tuple[int, int]:
        return self.specs[-1].width, self.specs[-1].height


def _cascade(
    request: JobRequest, catalog: ModelCatalog, entry: ModelEntry | CascadeEntry | None = None
) -> CascadeEntry:
    """The cascade the request names, and nothing it does not take; 422 for anything else."""
    if entry is None:
        try:
            entry = catalog.lookup(request.model)
        except GigasynthError as exc:
            raise ApiError(422, public_error(request_words(exc))) from None
    if not isinstance(entry, CascadeEntry):
        raise ApiError(
            422, f"layout is for a cascade job; {entry.name!r} is a single model, not a cascade"
        )
    unused = [
        name
        for name, value, default in (
            ("sampler", request.sampler, "ddim"),
            ("steps", request.steps, 50),
            ("mpp", request.mpp, None),
        )
        if value != default
    ]
    if unused:
        raise ApiError(
            422,
            f"{unused[0]} is not taken with cascade {entry.name!r}: its stages bring their "
            "own samplers, steps and resolutions (GET /v1/models)",
        )
    if request.layout is None and entry.cascade.layout == "given":
        raise ApiError(
            422,
            f"cascade {entry.name!r} starts from a layout: upload the image "
            "(POST /v1/layouts) and name its id as the job's layout",
        )
    return entry


def _plan(
    entry: CascadeEntry, layout: np.ndarray | None, request: JobRequest, config: ServiceConfig
) -> CascadePlan:
    """The stages and specs of a cascade job from its decoded layout (None: a generated
    one of the request's size), as synthesize_cascade makes them; 422 for what it refuses."""
    settings = cascade_settings(request.model_dump(), config.save_every)
    try:
        if layout is not None:
            start = layout_of(layout, entry.cascade)
        else:  # admit checked both before
            assert request.width is not None and request.height is not None
            start = make_layout(entry.cascade, None, settings.seed, (request.width, request.height))
        stages = entry.cascade.stages[entry.cascade.entry(start.kind) :]
        check_entry(stages[0], start)
    except GigasynthError as exc:
        message = named(request_words(exc), entry.cascade.path, entry.name)
        raise ApiError(422, public_error(message)) from None
    # The condition files' folder is only named in the specs; the check leaves them out.
    return CascadePlan(entry, stages, stage_specs(stages, start.size, settings, Path()))


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
            f"{job.spec.width}x{job.spec.height} slide: it needs "
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
