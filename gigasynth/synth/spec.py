"""The synth contract's data types: what to synthesise, progress reports, the result."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gigasynth.errors import FieldError, GigasynthError

SAMPLERS = ("ddim", "ddpm")
COMPRESSIONS = ("jpeg", "zlib", "none")


@dataclass(frozen=True)
class SynthSpec:
    """One slide to synthesise; its pixels are a pure function of these fields (I5).

    Whether it is a valid job is gigasynth.synth.job.check_job's to say (the one place).
    """

    checkpoint: str
    width: int
    height: int
    seed: int = 0
    sampler: str = "ddim"
    steps: int | None = 50
    eta: float = 0.0
    tile: int = 512  # engine tile side, px (0: the whole image in one task)
    halo_every: int | None = None
    save_every: int = 1  # a save every step keeps two state buffers, not three
    mpp: float | None = None
    tiff_compression: str = "jpeg"
    # A conditioned stage's low-resolution input: an image file at 1/f of the slide
    # (f the model's condition_downsample). None for unconditioned models.
    condition: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields; `condition` only where given (records of other jobs unchanged)."""
        data = asdict(self)
        if data["condition"] is None:
            del data["condition"]
        return data


@dataclass(frozen=True)
class SynthProgress:
    """Where a run stands; tiles count the engine-tile tasks of the current block of
    `block_steps` diffusion steps from `step` (temporal blocking: each task runs them all)."""

    phase: str
    step: int
    total_steps: int
    tiles_done: int
    tiles_total: int
    mpx_steps_per_s: float
    eta_s: float | None
    block_steps: int = 1

    @property
    def steps_done(self) -> float:
        """Diffusion steps done, the current block's share of its tiles included."""
        within = self.tiles_done / self.tiles_total if self.tiles_total else 0.0
        return self.step + self.block_steps * within


@dataclass(frozen=True)
class SynthResult:
    zarr_path: Path
    ome_tiff_path: Path | None
    preview_path: Path | None
    checkpoint_sha256: str
    seconds: float
    mpx_steps_per_s: float


class SynthCancelled(GigasynthError):
    """should_stop() turned True; the state saved last stays resumable."""


class SynthDiskFull(FieldError):
    """A full disk stopped the run; the state saved at `saved_step` stays resumable.

    The message names paths and the advice the resume field; `saved_step` and
    `total_steps` let a service word its own.
    """

    def __init__(self, message: str, saved_step: int, total_steps: int, advice: str) -> None:
        super().__init__(message, advice)
        self.saved_step = saved_step
        self.total_steps = total_steps
