"""Seam check for tiled outputs: are pixel steps across tile borders unlike those inside tiles?

Distinct windows straddling tile borders (all of them in a small image, a random
subset in a large one) are read from the image, never the whole gigapixel array. In
each window, the step between neighbouring pixels (grey level, mean of RGB) is
measured at every offset from the border. Two statistics compare the border pair
with the pairs inside tiles:

- the size of the steps, |step| (mean and 95th percentile): a hard edge at the border
  raises it;
- the shift, |mean signed step along the border| per window: a tile that is brighter
  or tinted as a whole shifts every step along its border the same way, which the
  mean exposes even where texture makes single steps far larger than the offset.
  `z` says how many standard deviations (over the offsets inside tiles) the border's
  shift lies above theirs. A seamless image keeps |z| at a few units; a seam gives
  a large z.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from gigasynth.errors import FieldError, GigasynthError
from gigasynth.eval.inputs import Regions


@dataclass(frozen=True)
class SeamStats:
    """Neighbour steps across the borders of one direction against those inside tiles."""

    direction: str  # "vertical" borders (steps along x) or "horizontal" (steps along y)
    borders: int  # distinct tile borders in the image for this direction
    windows: int
    pairs: int  # distinct pixel pairs straddling a border that were measured
    border_mean: float  # mean |step| across borders
    inside_mean: float  # mean |step| inside tiles
    border_p95: float
    inside_p95: float
    border_shift: float  # mean over windows of |mean signed step| along the border
    inside_shift: float  # the same for the offsets inside tiles (averaged)
    z: float  # (border_shift - inside_shift) / std of the inside offsets' shifts

    @property
    def ratio(self) -> float:
        return self.border_mean / self.inside_mean if self.inside_mean > 0 else float("inf")

    def to_dict(self) -> dict[str, float | int | str]:
        return {**asdict(self), "ratio": self.ratio}


def _steps(window: np.ndarray) -> np.ndarray:
    """Signed grey-level steps x[:, j+1] - x[:, j]: (rows, columns - 1)."""
    grey = window.astype(np.float64).mean(axis=-1)
    return np.diff(grey, axis=1)


def _direction(
    regions: Regions,
    tile: int,
    windows: int,
    span: int,
    rng: np.random.Generator,
    transpose: bool,
) -> SeamStats:
    length, across = (
        (regions.height, regions.width) if not transpose else (regions.width, regions.height)
    )
    borders = (across - 1) // tile
    name = "horizontal" if transpose else "vertical"
    if borders < 1:
        raise FieldError(f"the image has no {name} tile border for [tile] {tile}")
    half = min(span, tile) // 2
    # Windows run along the border within one tile (a tile's offset is constant there).
    rows = min(tile // -(-tile // span), length)
    starts = [
        t + k * rows
        for t in range(0, length, tile)
        for k in range(tile // rows)
        if t + (k + 1) * rows <= length
    ]
    # Distinct windows: every (border, run of rows) pair, or a random subset of them.
    places = borders * len(starts)
    chosen = rng.choice(places, size=min(windows, places), replace=False)
    steps = []
    for place in sorted(int(p) for p in chosen):
        border = tile * (place // len(starts) + 1)
        start = starts[place % len(starts)]
        lo, hi = max(0, border - half), min(across, border + half)
        if transpose:
            block = regions.read(lo, start, hi - lo, rows).transpose(1, 0, 2)
        else:
            block = regions.read(start, lo, rows, hi - lo)
        measured = _steps(block)
        # Pad so that column `half - 1` is always the pair (border - 1, border).
        left = half - (border - lo)
        padded = np.full((rows, 2 * half - 1), np.nan)
        padded[:, left : left + measured.shape[1]] = measured
        steps.append(padded)
    data = np.stack(steps)  # (windows, rows, offsets)
    size = np.abs(data)
    at_border, inside = size[..., half - 1], np.delete(size, half - 1, axis=-1)
    shifts = np.nanmean(np.abs(np.nanmean(data, axis=1)), axis=0)  # per offset
    border_shift = float(shifts[half - 1])
    others = np.delete(shifts, half - 1)
    others = others[np.isfinite(others)]
    spread = float(others.std()) if len(others) > 1 else 0.0
    inside_shift = float(others.mean()) if len(others) else 0.0
    z = (border_shift - inside_shift) / spread if spread > 0 else 0.0
    return SeamStats(
        direction=name,
        borders=borders,
        windows=len(chosen),
        pairs=int(np.isfinite(at_border).sum()),
        border_mean=float(np.nanmean(at_border)),
        inside_mean=float(np.nanmean(inside)),
        border_p95=float(np.nanpercentile(at_border, 95)),
        inside_p95=float(np.nanpercentile(inside, 95)),
        border_shift=border_shift,
        inside_shift=inside_shift,
        z=z,
    )


def seam_check(
    regions: Regions, tile: int, windows: int = 64, span: int = 128, seed: int = 0
) -> list[SeamStats]:
    """Seam statistics for vertical and horizontal tile borders (those the image has)."""
    if tile < 4:
        raise FieldError(f"[tile] must be at least 4 px, not {tile}")
    if windows < 1:
        raise GigasynthError(f"the seam check needs at least one window, not {windows}")
    rng = np.random.default_rng(seed)
    results = [
        _direction(regions, tile, windows, span, rng, transpose)
        for transpose, across in ((False, regions.width), (True, regions.height))
        if across - 1 >= tile
    ]
    if not results:
        raise GigasynthError(
            f"the image ({regions.width}x{regions.height}) has no tile border for [tile] {tile}"
        )
    return results
