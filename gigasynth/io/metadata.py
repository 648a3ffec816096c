"""What a slide file says about itself: size, pixel size, name and provenance."""

from __future__ import annotations

import json
import math
import operator
from dataclasses import dataclass
from typing import Any

from gigasynth import __version__
from gigasynth.errors import GigasynthError


@dataclass(frozen=True)
class SlideMetadata:
    """Level-0 size in pixels, µm per pixel at level 0, and how the slide was made.

    `provenance` holds what a reader needs to reproduce or trust the slide (checkpoint
    sha256, seed, sampler, steps, ...); it must be JSON-serialisable. The writers stamp
    it with ``synthetic: True`` and the gigasynth version (see `stamped_provenance`).
    """

    width: int
    height: int
    mpp: float
    provenance: dict[str, Any]
    name: str = "gigasynth synthetic slide"

    def __post_init__(self) -> None:
        for label in ("width", "height"):
            side = getattr(self, label)
            try:
                side_px = operator.index(side)
            except TypeError:
                side_px = 0
            if isinstance(side, bool) or side_px < 1:
                raise GigasynthError(f"slide {label} must be a positive integer, got {side!r}")
            object.__setattr__(self, label, side_px)  # numpy integers become plain ints
        try:
            mpp = float(self.mpp)
        except (TypeError, ValueError):
            mpp = math.nan
        if isinstance(self.mpp, bool | str | bytes) or not math.isfinite(mpp) or mpp <= 0:
            raise GigasynthError(f"mpp must be a positive number of µm per pixel, got {self.mpp!r}")
        object.__setattr__(self, "mpp", mpp)
        if not isinstance(self.provenance, dict):
            raise GigasynthError("provenance must be a dict")
        try:
            json.dumps(self.provenance, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise GigasynthError(f"provenance is not JSON-serialisable: {exc}") from None
        if not isinstance(self.name, str) or not self.name.strip():
            raise GigasynthError("slide name must be a non-empty string")

    def stamped_provenance(self) -> dict[str, Any]:
        """The provenance as written: marked synthetic, with the writing gigasynth version.

        An existing version is kept, so converting an old Zarr to TIFF keeps the version
        that produced its pixels.
        """
        stamped = dict(self.provenance)
        stamped.setdefault("gigasynth_version", __version__)
        stamped["synthetic"] = True
        return stamped
