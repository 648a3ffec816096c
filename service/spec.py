"""How a job request maps to the engine: its SynthSpec, or a cascade job's CascadeSettings
(one place, for admission and the runner), and the provenance a client sees, resolution
included.

The slide's µm per pixel follows the engine's rule (gigasynth.synth.job.slide_resolution):
the model's recorded resolution, which a request may only repeat; the magnification is
the one the OME-XML records. The viewer draws its scale bar from these figures, so the
page and the files cannot disagree.
"""

from __future__ import annotations

from typing import Any

from gigasynth import __version__
from gigasynth.cascade.synth import CascadeSettings
from gigasynth.errors import GigasynthError
from gigasynth.synth import SynthSpec
from gigasynth.synth.job import Resolution, slide_resolution
from gigasynth_service.catalog import CascadeEntry, ModelCatalog, ModelEntry
from gigasynth_service.store import JobRecord


def synth_spec(request: dict[str, Any], checkpoint_ref: str, save_every: int) -> SynthSpec:
    """The engine's spec for a stored job request and the checkpoint its model names."""
    return SynthSpec(
        checkpoint=checkpoint_ref,
        width=request["width"],
        height=request["height"],
        seed=request["seed"],
        sampler=request["sampler"],
        steps=request["steps"],
        eta=request["eta"],
        tile=request["tile"],
        mpp=request["mpp"],
        save_every=save_every,
    )


def cascade_settings(request: dict[str, Any], save_every: int) -> CascadeSettings:
    """What every stage of a cascade job shares: the request's seed, eta and tile."""
    return CascadeSettings(
        seed=request["seed"], eta=request["eta"], tile=request["tile"], save_every=save_every
    )


def _model(name: str, catalog: ModelCatalog) -> ModelEntry | CascadeEntry | None:
    try:
        return catalog.lookup(name)
    except (GigasynthError, OSError):  # no longer offered: what the request says
        return None


def resolution(
    request: dict[str, Any], model: ModelEntry | CascadeEntry | None
) -> Resolution | None:
    """The resolution of the job's slide; from the request alone when its model is gone or
    the job predates the rule (a request's mpp was then written as asked). A cascade's
    slide is at its finest stage's µm per pixel."""
    if isinstance(model, CascadeEntry):
        return Resolution(model.cascade.mpp, "model")
    asked = request.get("mpp")
    if model is None:
        return None if asked is None else Resolution(float(asked), "request")
    try:
        return slide_resolution(asked, model.meta)
    except GigasynthError:
        return None if asked is None else Resolution(float(asked), "request")


def provenance(job: JobRecord, catalog: ModelCatalog) -> dict[str, Any]:
    """What made the job's slide, as its status shows it from submission on: model and
    checkpoint, sampler, resolution, the gigasynth version, and when it ran."""
    r, result = job.request, job.result or {}
    model = _model(r["model"], catalog)
    res = resolution(r, model)
    ended = job.finished if job.state == "succeeded" else None
    # A cascade's stages bring their own samplers and steps (the request's are unused).
    cascade = model.describe() if isinstance(model, CascadeEntry) else None
    staged = cascade is not None or r.get("layout") is not None
    return {
        "synthetic": True,
        "model": r["model"],
        "checkpoint_sha256": result.get("checkpoint_sha256") or (model and model.sha256),
        "seed": r["seed"],
        "sampler": None if staged else r["sampler"],
        "steps": None if staged else r["steps"],
        "stages": cascade["stages"] if cascade else None,
        "layout": r.get("layout"),
        "eta": r["eta"],
        "width": r["width"],
        "height": r["height"],
        "tile": r["tile"],
        "mpp": res.mpp if res else None,
        "magnification": res.magnification if res else None,
        "mpp_source": res.source if res else None,
        "gigasynth_version": result.get(
            "gigasynth_version", None if job.state == "succeeded" else __version__
        ),
        "submitted": job.created,
        "started": job.started,
        "finished": ended,
        "duration_s": round(ended - job.started, 3) if ended and job.started else None,
    }
