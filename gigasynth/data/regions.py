"""Held-out protocol: disjoint train, validation and test regions of a slide.

A quality figure means something only on tissue the model never saw, and a choice
(schedule, step count, when to stop training, which recipe or model) read off the figures
a release reports makes those figures optimistic. Every slide is therefore split the same
documented way, along its longer side into three bands with a gap between neighbours:

    train (first 45 % of the length left after the gaps) | gap | val (20 %) | gap | test

- `train`: the only pixels training, calibration (tissue thresholds, the procedural
  masks' statistics) and any fitted statistic may read;
- `val`: every choice is made here;
- `test`: read only for the figures a release reports (docs/RESULTS.md says which).

Each gap (256 µm, or 512 px when the slide states no pixel size) is wider than the
bundled models' training crop plus their reach at their training resolution, so no
training crop and no evaluation crop share a pixel or a neighbourhood.

Regions are in level-0 pixels, half-open: x in [x0, x1), y in [y0, y1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gigasynth.errors import GigasynthError

SHARES = (("train", 0.45), ("val", 0.20), ("test", 0.35))  # of the length less the gaps
SPLIT_GAP_UM = 256.0  # gap between neighbouring regions, in micrometres
SPLIT_GAP_PX = 512  # the gap in level-0 px when the slide states no pixel size
MIN_REGION_PX = 64  # the shortest side a region may have
NAMED = tuple(name for name, _ in SHARES)


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
    """The gap between neighbouring regions in level-0 px (256 µm, or 512 px)."""
    return SPLIT_GAP_PX if not mpp else round(SPLIT_GAP_UM / mpp)


def held_out_split(width: int, height: int, mpp: float | None) -> dict[str, Region]:
    """The train, val and test regions of a width x height slide (level 0), in that order
    along its longer side."""
    gap = split_gap_px(mpp)
    long_side = max(width, height)
    usable = long_side - gap * (len(SHARES) - 1)
    lengths = [round(usable * share) for _, share in SHARES[:-1]]
    lengths.append(usable - sum(lengths))
    if min(lengths) < MIN_REGION_PX:
        raise GigasynthError(
            f"a {width}x{height} px slide is too small to split into train, val and test "
            f"regions {gap} px apart (each at least {MIN_REGION_PX} px long)"
        )
    regions, start = {}, 0
    for (name, _), length in zip(SHARES, lengths, strict=True):
        end = start + length
        regions[name] = (
            Region(0, start, width, end) if height >= width else Region(start, 0, end, height)
        )
        start = end + gap
    return regions


def resolve_region(spec: str, width: int, height: int, mpp: float | None) -> Region:
    """'train', 'val', 'test', or 'x0,y0,x1,y1' (level-0 px) -> a Region inside the slide."""
    if spec in NAMED:
        return held_out_split(width, height, mpp)[spec]
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 4 or not all(re.fullmatch(r"-?[0-9]+", p) for p in parts):
        raise GigasynthError(
            f"region {spec!r}: expected 'train', 'val', 'test' or x0,y0,x1,y1 (level-0 px)"
        )
    region = Region(*(int(p) for p in parts))
    if region.width <= 0 or region.height <= 0:
        raise GigasynthError(f"region {region} is empty")
    if region.x0 < 0 or region.y0 < 0 or region.x1 > width or region.y1 > height:
        raise GigasynthError(f"region {region} lies outside the {width}x{height} px slide")
    return region
