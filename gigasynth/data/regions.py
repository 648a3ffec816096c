"""Held-out protocol: disjoint train and test regions of a slide.

A quality figure means something only on tissue the model never saw. Every slide is split
the same documented way: along its longer side, the first part is the train region and the
last part the test region, with a gap between them wider than any model's reach (its NCA
steps per diffusion step, at the training resolution) plus a training crop, so that no
training crop and no test crop share a pixel or a neighbourhood.

Regions are in level-0 pixels, half-open: x in [x0, x1), y in [y0, y1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gigasynth.errors import GigasynthError

SPLIT_AT = 0.5  # where the gap is centred, as a fraction of the longer side
SPLIT_GAP_UM = 256.0  # gap between the train and the test region, in micrometres
SPLIT_GAP_PX = 512  # the gap in level-0 px when the slide states no pixel size
NAMED = ("train", "test")


@dataclass(frozen=True)
class Region:
    """A rectangle of a slide in level-0 pixels, half-open."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def __str__(self) -> str:
        return f"{self.x0},{self.y0},{self.x1},{self.y1}"


def split_gap_px(mpp: float | None) -> int:
    """The gap between train and test regions in level-0 px (256 um, or 512 px)."""
    return SPLIT_GAP_PX if not mpp else round(SPLIT_GAP_UM / mpp)


def held_out_split(width: int, height: int, mpp: float | None) -> dict[str, Region]:
    """The train and test regions of a width x height slide (level 0)."""
    gap = split_gap_px(mpp)
    long_side = max(width, height)
    cut = round(long_side * SPLIT_AT)
    train_end, test_start = cut - gap // 2, cut + gap - gap // 2
    if train_end <= 0 or test_start >= long_side:
        raise GigasynthError(
            f"a {width}x{height} px slide is too small to split into train and "
            f"test regions {gap} px apart"
        )
    if height >= width:
        return {
            "train": Region(0, 0, width, train_end),
            "test": Region(0, test_start, width, height),
        }
    return {"train": Region(0, 0, train_end, height), "test": Region(test_start, 0, width, height)}


def resolve_region(spec: str, width: int, height: int, mpp: float | None) -> Region:
    """'train', 'test', or 'x0,y0,x1,y1' (level-0 px) -> a Region inside the slide."""
    if spec in NAMED:
        return held_out_split(width, height, mpp)[spec]
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 4 or not all(re.fullmatch(r"-?[0-9]+", p) for p in parts):
        raise GigasynthError(
            f"region {spec!r}: expected 'train', 'test' or x0,y0,x1,y1 (level-0 px)"
        )
    region = Region(*(int(p) for p in parts))
    if region.width <= 0 or region.height <= 0:
        raise GigasynthError(f"region {region} is empty")
    if region.x0 < 0 or region.y0 < 0 or region.x1 > width or region.y1 > height:
        raise GigasynthError(f"region {region} lies outside the {width}x{height} px slide")
    return region
