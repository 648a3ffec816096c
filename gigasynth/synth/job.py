"""A checked job: the spec against its checkpoint, the tile plan and the exchange schedule."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gigasynth.checkpoint import Checkpoint
from gigasynth.cli.common import MAX_PIXELS, MAX_WHOLE_IMAGE_PIXELS
from gigasynth.config import ModelConfig
from gigasynth.errors import GigasynthError
from gigasynth.sampling import SampleRequest
from gigasynth.synth.spec import SynthSpec
from gigasynth.synth.state import X_DTYPE
from gigasynth.synth.tasks import ModelRef
from gigasynth.tiling import TilePlan, plan_tiles


@dataclass(frozen=True)
class Job:
    """Everything the driver needs, derived once from the spec and the checkpoint."""

    spec: SynthSpec
    ref: ModelRef
    config: ModelConfig
    plan: TilePlan
    timesteps: tuple[int, ...]
    exchanges: tuple[range, ...]

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
        return {"checkpoint_sha256": self.ref.sha256, "width": s.width, "height": s.height,
                "seed": s.seed, "sampler": s.sampler, "eta": s.eta,
                "timesteps": list(self.timesteps), "tile": s.tile, "state": X_DTYPE}


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
    return Job(spec, ref, config, plan, tuple(sampler.timesteps), exchanges)
