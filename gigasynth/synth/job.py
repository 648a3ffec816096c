"""A checked job: the spec against its checkpoint, the tile plan and the exchange schedule.

The slide's resolution (µm per pixel) is decided here, for the CLI and the service alike:
it is a property of the model (the `mpp` its checkpoint metadata records, that of the
slides it learnt from), not a label a request may choose. A request's mpp must match the
model's within MPP_TOLERANCE; only a model that records none takes the request's value
(or DEFAULT_MPP).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gigasynth.checkpoint import Checkpoint
from gigasynth.cli.common import MAX_PIXELS, MAX_WHOLE_IMAGE_PIXELS
from gigasynth.config import ModelConfig
from gigasynth.errors import GigasynthError
from gigasynth.images import read_rgb, to_model_space
from gigasynth.io.omexml import nominal_magnification
from gigasynth.sampling import SampleRequest
from gigasynth.synth.spec import SynthSpec
from gigasynth.synth.state import X_DTYPE
from gigasynth.synth.tasks import ModelRef
from gigasynth.tiling import TilePlan, plan_tiles

DEFAULT_MPP = 0.5           # µm per pixel of a model that records none, when none is asked
MPP_TOLERANCE = 0.01        # a requested mpp within 1 % of the model's is the model's


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
        return Resolution(DEFAULT_MPP, "default") if requested is None else \
            Resolution(float(requested), "request")
    if requested is not None and abs(requested - made) > MPP_TOLERANCE * made:
        raise GigasynthError(
            f"mpp {requested:g} µm/px is not the model's resolution: it makes "
            f"{made:g} µm/px (about {nominal_magnification(made):g}x), fixed by the slides it "
            f"was trained on; leave mpp out or give {made:g} (within "
            f"{MPP_TOLERANCE:.0%})")
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
        return self.spec.width * self.spec.height * self.config.steps

    def identity(self) -> dict[str, Any]:
        """What a saved state must match to be resumed: pixels, state chunking and the
        precision x is stored in."""
        s = self.spec
        identity = {"checkpoint_sha256": self.ref.sha256, "width": s.width,
                    "height": s.height, "seed": s.seed, "sampler": s.sampler, "eta": s.eta,
                    "timesteps": list(self.timesteps), "tile": s.tile, "state": X_DTYPE}
        if self.condition_sha256 is not None:
            identity["condition_sha256"] = self.condition_sha256
        return identity


def _exchanges(nca_steps: int, every: int | None) -> tuple[range, ...]:
    """The NCA steps of one diffusion step, cut into exchanges of at most `every` steps.

    A model of 0 NCA steps (its prediction is zero: the pipeline benchmark's) has one
    empty exchange.
    """
    if nca_steps == 0:
        return (range(0),)
    every = nca_steps if every is None else every
    return tuple(range(a, min(a + every, nca_steps)) for a in range(0, nca_steps, every))


def prepare_job(spec: SynthSpec, checkpoint: Checkpoint) -> Job:
    """Check the spec against the model; every problem is one GigasynthError line."""
    spec.check()
    config = checkpoint.config
    resolution = slide_resolution(spec.mpp, checkpoint.meta)
    limit = MAX_PIXELS if spec.tile else MAX_WHOLE_IMAGE_PIXELS
    if spec.width * spec.height > limit:
        what = "tiled" if spec.tile else "whole-image (--tile 0)"
        raise GigasynthError(f"size {spec.width}x{spec.height} exceeds the {what} limit of "
                             f"{limit:,} pixels")
    if min(spec.width, spec.height) < 2:
        raise GigasynthError(f"size {spec.width}x{spec.height} is too small (at least 2x2)")
    if spec.tile and not config.is_tileable:
        why = "FourierDiff-NCA" if config.kind == "fourier-diff-nca" else "canvas coordinates"
        raise GigasynthError(f"{spec.checkpoint} is a whole-image model ({why}): use --tile 0")
    condition, condition_sha256 = read_condition(spec, config)
    if spec.halo_every is not None and spec.halo_every > config.steps:
        raise GigasynthError(f"halo_every {spec.halo_every} exceeds the model's "
                             f"{config.steps} NCA steps per diffusion step")
    exchanges = _exchanges(config.steps, spec.halo_every)
    plan = plan_tiles(spec.width, spec.height, spec.tile, len(exchanges[0]))
    sampler = SampleRequest(spec.sampler, spec.steps, spec.eta).build(checkpoint.model)
    # Workers of a remote cluster resolve paths in their own working folder: pass absolute ones.
    where = spec.checkpoint
    if not where.startswith("builtin:"):
        where = str(Path(where).absolute())
    ref = ModelRef(where, checkpoint.sha256, spec.sampler,
                   spec.steps if spec.sampler == "ddim" else None, spec.eta, spec.seed)
    return Job(spec, ref, config, plan, tuple(sampler.timesteps), exchanges, resolution,
               condition, condition_sha256)


def read_condition(spec: SynthSpec, config: ModelConfig) -> tuple[np.ndarray | None, str | None]:
    """A conditioned stage's input image as (channels, h, w) float32 in [-1, 1] and the
    sha256 of its pixels; (None, None) for an unconditioned model. One-line errors."""
    if spec.condition is None:
        if config.is_conditioned:
            raise GigasynthError(
                f"{spec.checkpoint} is a conditioned stage ({config.condition_downsample}x "
                "super-resolution): give its low-resolution input image (--condition)")
        return None, None
    if not config.is_conditioned:
        raise GigasynthError(f"{spec.checkpoint} takes no condition (it is not a conditioned "
                             "stage): leave the condition out")
    rgb = read_rgb(spec.condition)
    k, f = config.condition_channels, config.condition_downsample
    h, w = rgb.shape[:2]
    if (w * f, h * f) != (spec.width, spec.height):
        raise GigasynthError(
            f"condition is {w}x{h} px; a {spec.width}x{spec.height} slide from this "
            f"{f}x stage needs it at {spec.width / f:g}x{spec.height / f:g} px")
    low = to_model_space(np.array(rgb))[0].numpy()  # a writable copy for torch
    if k == 1:
        low = low.mean(axis=0, keepdims=True)
    elif k != 3:
        raise GigasynthError(f"the stage takes a {k}-channel condition; an image file gives "
                             "1 (grey) or 3 (RGB)")
    low = np.ascontiguousarray(low, dtype=np.float32)
    digest = hashlib.sha256(f"{low.shape}".encode() + low.tobytes()).hexdigest()
    return low, digest
