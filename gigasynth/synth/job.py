"""Job validity: `check_job(spec)` is the one place a synthesis job is checked.

Every refusal the engine makes about a job is here: the spec's fields, the size limits
(GIGASYNTH_MAX_PIXELS, GIGASYNTH_MAX_WHOLE_IMAGE_PIXELS), the spec against its model,
the tile plan and the exchange schedule. The CLI and the service call it and add nothing
of their own but the words (the CLI's flags, via `FieldError.render`) and, for the service,
deployment policy and token quotas. Everything is arithmetic on the spec and the model's
config (the tile plan is lazy), so checking costs the same at any slide size.

Messages name the spec's fields; a field a front end may want to call otherwise is
written `[field]` in the template (`use [tile] 0`), which `str()` shows as the field
name and `render(name)` as the front end's (gigasynth.errors.FieldError).

The slide's resolution (µm per pixel) is decided here, for the CLI and the service alike:
it is a property of the model (the `mpp` its checkpoint metadata records, that of the
slides it learnt from), not a label a request may choose. A request's mpp must match the
model's within MPP_TOLERANCE; only a model that records none takes the request's value
(or DEFAULT_MPP).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gigasynth.checkpoint import Checkpoint, load_checkpoint
from gigasynth.config import ModelConfig
from gigasynth.errors import FieldError
from gigasynth.images import read_rgb
from gigasynth.io.omexml import nominal_magnification
from gigasynth.sampling import SampleRequest
from gigasynth.sampling.condition import image_condition
from gigasynth.synth.spec import COMPRESSIONS, SAMPLERS, SynthSpec
from gigasynth.synth.state import X_DTYPE
from gigasynth.synth.tasks import ModelRef
from gigasynth.tiling import TilePlan, plan_tiles

DEFAULT_MPP = 0.5  # µm per pixel of a model that records none, when none is asked
MPP_TOLERANCE = 0.01  # a requested mpp within 1 % of the model's is the model's
# Pixels of one slide: tiled, and in one task (tile 0, the whole state in memory).
MAX_PIXELS = int(os.environ.get("GIGASYNTH_MAX_PIXELS", str(1 << 36)))
MAX_WHOLE_IMAGE_PIXELS = int(os.environ.get("GIGASYNTH_MAX_WHOLE_IMAGE_PIXELS", str(1 << 26)))


class JobError(FieldError):
    """A job the engine refuses; the message names the spec's fields (FieldError)."""


@dataclass(frozen=True)
class Resolution:
    """The slide's µm per pixel and where it comes from: the model's metadata, the request
    (a model that records none) or the default."""

    mpp: float
    source: Literal["model", "request", "default"]

    @property
    def magnification(self) -> float:
        """The objective magnification a scanner would report (the OME-XML's)."""
        return nominal_magnification(self.mpp)


def model_mpp(meta: Mapping[str, Any]) -> float | None:
    """The µm per pixel a checkpoint's metadata records, or None."""
    value = meta.get("mpp")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def slide_resolution(requested: float | None, meta: Mapping[str, Any]) -> Resolution:
    """The resolution of a slide the model with metadata `meta` makes, given a request's
    mpp (None: not asked); a GigasynthError when the request asks for another one."""
    made = model_mpp(meta)
    if made is None:
        return (
            Resolution(DEFAULT_MPP, "default")
            if requested is None
            else Resolution(float(requested), "request")
        )
    if requested is not None and abs(requested - made) > MPP_TOLERANCE * made:
        raise JobError(
            f"mpp {requested:g} µm/px is not the model's resolution: it makes "
            f"{made:g} µm/px (about {nominal_magnification(made):g}x), fixed by the slides it "
            f"was trained on; leave [mpp] out or give {made:g} (within "
            f"{MPP_TOLERANCE:.0%})"
        )
    return Resolution(made, "model")


@dataclass(frozen=True)
class Job:
    """Everything the driver needs, derived once from the spec and the checkpoint."""

    spec: SynthSpec
    ref: ModelRef
    config: ModelConfig
    plan: TilePlan
    timesteps: tuple[int, ...]
    exchanges: tuple[range, ...]
    resolution: Resolution
    # A conditioned stage's input, (channels, h, w) float32 in [-1, 1], and its hash.
    condition: np.ndarray | None = field(default=None, compare=False, repr=False)
    condition_sha256: str | None = None

    @property
    def total_steps(self) -> int:
        return len(self.timesteps)

    @property
    def work_per_step(self) -> int:
        """Useful pixel-NCA-steps of one diffusion step (halo recomputation not counted)."""
        return self.spec.width * self.spec.height * self.config.nca_steps

    def identity(self) -> dict[str, Any]:
        """What a saved state must match to be resumed: pixels, state chunking and the
        precision x is stored in."""
        s = self.spec
        identity = {
            "checkpoint_sha256": self.ref.sha256,
            "width": s.width,
            "height": s.height,
            "seed": s.seed,
            "sampler": s.sampler,
            "eta": s.eta,
            "timesteps": list(self.timesteps),
            "tile": s.tile,
            "state": X_DTYPE,
        }
        if self.condition_sha256 is not None:
            identity["condition_sha256"] = self.condition_sha256
        return identity


def max_block_steps(job: Job) -> int:
    """The most diffusion steps one tile task may run (temporal blocking, I6).

    A block of K steps reads a halo of K times one step's reach, which must stay within
    half a tile (I4's rule: a halo reaches the direct neighbours only). Halo exchanges
    (`halo_every`) cut a step into several passes, so they keep K = 1; the whole image
    and a model of no reach take any K (more than the job's steps is the same as that).
    """
    if len(job.exchanges) > 1:
        return 1
    reach = job.config.halo
    if not job.spec.tile or not reach:
        return job.total_steps
    return max(1, job.spec.tile // (2 * reach))


def check_block_steps(job: Job, block_steps: int) -> None:
    """Refuse (JobError, one line) a block of diffusion steps the job cannot run.

    K changes no byte of the slide or of a saved state, so it is a run's setting, not
    part of the job's identity: a run resumed with another K gives the same bytes.
    """
    if block_steps < 1:
        raise JobError(f"[block_steps] must be at least 1, not {block_steps}")
    if block_steps == 1:
        return
    if len(job.exchanges) > 1:
        raise JobError(
            f"[block_steps] {block_steps} needs one exchange per diffusion step",
            "leave [halo_every] out, or use [block_steps] 1",
        )
    most, reach = max_block_steps(job), job.config.halo
    if job.spec.tile and reach and block_steps > most:
        raise JobError(
            f"[block_steps] {block_steps} needs a halo of {block_steps * reach} px, more "
            f"than half the [tile] of {job.spec.tile} px",
            f"use [block_steps] {most} or less, or [tile] {2 * block_steps * reach} or more",
        )


def _exchanges(nca_steps: int, every: int | None) -> tuple[range, ...]:
    """The NCA steps of one diffusion step, cut into exchanges of at most `every` steps.

    A model of 0 NCA steps (its prediction is zero: the pipeline benchmark's) has one
    empty exchange.
    """
    if nca_steps == 0:
        return (range(0),)
    every = nca_steps if every is None else every
    return tuple(range(a, min(a + every, nca_steps)) for a in range(0, nca_steps, every))


def _check_fields(spec: SynthSpec) -> None:
    """Checks of the spec alone (no model needed)."""
    if spec.sampler not in SAMPLERS:
        raise JobError(f"unknown sampler {spec.sampler!r} (ddpm or ddim)")
    if spec.width < 1 or spec.height < 1:
        raise JobError(f"size {spec.width}x{spec.height} must be positive")
    if spec.tile < 0:
        raise JobError(f"[tile] must be 0 (whole image) or positive, not {spec.tile}")
    if spec.halo_every is not None and spec.halo_every < 1:
        raise JobError(f"[halo_every] must be at least 1, not {spec.halo_every}")
    if spec.halo_every is not None and spec.tile == 0:
        raise JobError("[halo_every] needs tiles ([tile] > 0)")
    if spec.save_every < 1:
        raise JobError(f"[save_every] must be at least 1, not {spec.save_every}")
    if spec.mpp is not None and not spec.mpp > 0:
        raise JobError(f"[mpp] must be positive, not {spec.mpp}")
    if spec.tiff_compression not in COMPRESSIONS:
        raise JobError(f"unknown TIFF compression {spec.tiff_compression!r} (jpeg, zlib or none)")
    limit = MAX_PIXELS if spec.tile else MAX_WHOLE_IMAGE_PIXELS
    if spec.width * spec.height > limit:
        what, env = (
            ("", "GIGASYNTH_MAX_PIXELS")
            if spec.tile
            else ("whole-image ([tile] 0) ", "GIGASYNTH_MAX_WHOLE_IMAGE_PIXELS")
        )
        raise JobError(
            f"size {spec.width}x{spec.height} exceeds the {what}limit of {limit:,} pixels ({env})"
        )
    if min(spec.width, spec.height) < 2:
        raise JobError(f"size {spec.width}x{spec.height} is too small (at least 2x2)")


def check_job(
    spec: SynthSpec, checkpoint: Checkpoint | None = None, *, model: str | None = None
) -> Job:
    """The checked job of `spec`, or a JobError (one line) naming the field at fault.

    The one place a job is checked: fields, size limits, then the spec against the model
    (`checkpoint`, loaded from spec.checkpoint when not given): resolution, tiling, the
    sampler's steps, a stage's condition, halo exchanges and the tile plan. `model` is
    how messages name the model (default: spec.checkpoint). Cost is independent of the
    slide's size (the plan is arithmetic); a conditioned stage's input image is read.
    """
    _check_fields(spec)
    if checkpoint is None:
        checkpoint = load_checkpoint(spec.checkpoint)
    name = spec.checkpoint if model is None else model
    config = checkpoint.config
    resolution = slide_resolution(spec.mpp, checkpoint.meta)
    if spec.tile and not config.is_tileable:
        why = "FourierDiff-NCA" if config.kind == "fourier-diff-nca" else "canvas coordinates"
        raise JobError(f"{name} is a whole-image model ({why}): use [tile] 0")
    steps_problem = SampleRequest(spec.sampler, spec.steps).steps_problem(config.timesteps)
    if steps_problem is not None:
        raise JobError(steps_problem)
    condition, condition_sha256 = read_condition(spec, config, name)
    if spec.halo_every is not None and spec.halo_every > config.nca_steps:
        raise JobError(
            f"halo_every {spec.halo_every} exceeds the model's "
            f"{config.nca_steps} NCA steps per diffusion step"
        )
    exchanges = _exchanges(config.nca_steps, spec.halo_every)
    halo = len(exchanges[0])
    if spec.tile and spec.tile < 2 * halo:
        whose = (
            "the model's halo"
            if spec.halo_every is None
            else f"the halo of [halo_every] {spec.halo_every}"
        )
        raise JobError(
            f"tile {spec.tile} px is smaller than twice the halo (2 x {halo} px): "
            f"use [tile] {2 * halo} or more, twice {whose}"
        )
    plan = plan_tiles(spec.width, spec.height, spec.tile, halo)
    sampler = SampleRequest(spec.sampler, spec.steps, spec.eta).build(checkpoint.model)
    # Workers of a remote cluster resolve paths in their own working folder: pass absolute ones.
    where = spec.checkpoint
    if not where.startswith("builtin:"):
        where = str(Path(where).absolute())
    ref = ModelRef(
        where,
        checkpoint.sha256,
        spec.sampler,
        spec.steps if spec.sampler == "ddim" else None,
        spec.eta,
        spec.seed,
    )
    return Job(
        spec,
        ref,
        config,
        plan,
        tuple(sampler.timesteps),
        exchanges,
        resolution,
        condition,
        condition_sha256,
    )


def read_condition(
    spec: SynthSpec, config: ModelConfig, name: str | None = None
) -> tuple[np.ndarray | None, str | None]:
    """A conditioned stage's input image as (channels, h, w) float32 in [-1, 1] and the
    sha256 of its pixels; (None, None) for an unconditioned model. One-line JobErrors;
    `name`: how they name the model (default: spec.checkpoint)."""
    name = spec.checkpoint if name is None else name
    if spec.condition is None:
        if config.is_conditioned:
            raise JobError(
                f"{name} is a conditioned stage ({config.condition_downsample}x "
                "super-resolution): give its low-resolution input image ([condition])"
            )
        return None, None
    if not config.is_conditioned:
        raise JobError(
            f"{name} takes no condition (it is not a conditioned stage): leave the [condition] out"
        )
    rgb = read_rgb(spec.condition)
    k, f = config.condition_channels, config.condition_downsample
    h, w = rgb.shape[:2]
    if (w * f, h * f) != (spec.width, spec.height):
        raise JobError(
            f"condition is {w}x{h} px; a {spec.width}x{spec.height} slide from this "
            f"{f}x stage needs it at {spec.width / f:g}x{spec.height / f:g} px"
        )
    if k not in (1, 3):
        raise JobError(
            f"the stage takes a {k}-channel condition; an image file gives 1 (grey) or 3 (RGB)"
        )
    low = image_condition(rgb, config)
    digest = hashlib.sha256(f"{low.shape}".encode() + low.tobytes()).hexdigest()
    return low, digest
