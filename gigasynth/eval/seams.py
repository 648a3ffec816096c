"""Seam check for tiled outputs: are pixel steps across tile borders unlike those inside tiles?

Distinct windows straddling tile borders (all of them in a small image, a random
subset in a large one) are read from the image, never the whole gigapixel array. In
each window the absolute difference between neighbouring pixels (mean over RGB) is
averaged along the border, giving a profile over the offset from the border. The
border pair is compared with every other offset of the profile: a seam makes the
border pair an outlier (ratio above 1, z-score of many standard deviations), while a
seamless image keeps it within the spread of the other offsets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from gigasynth.errors import GigasynthError
from gigasynth.eval.inputs import Regions


@dataclass(frozen=True)
class SeamStats:
    """Neighbour differences across the borders of one direction vs inside tiles."""

    direction: str  # "vertical" borders (steps along x) or "horizontal" (steps along y)
    borders: int  # distinct tile borders in the image for this direction
    windows: int
    pairs: int  # pixel pairs straddling a border that were measured
    border_mean: float
    inside_mean: float
    border_p95: float
    inside_p95: float
    z: float  # (border mean - mean of other offsets) / their standard deviation

    @property
    def ratio(self) -> float:
        return self.border_mean / self.inside_mean if self.inside_mean > 0 else float("inf")

    def to_dict(self) -> dict[str, float | int | str]:
        return {**asdict(self), "ratio": self.ratio}


def _profile(window: np.ndarray) -> np.ndarray:
    """|x[:, j+1] - x[:, j]| averaged over RGB: (rows, columns - 1)."""
    w = window.astype(np.int16)
    return np.abs(np.diff(w, axis=1)).mean(axis=-1)


def _direction(
    regions: Regions, tile: int, windows: int, span: int, rng: np.random.Generator,
    transpose: bool,
) -> SeamStats:
    length, across = (regions.height, regions.width) if not transpose else (
        regions.width, regions.height)
    borders = (across - 1) // tile
    name = "horizontal" if transpose else "vertical"
    if borders < 1:
        raise GigasynthError(f"the image has no {name} tile border for --tile {tile}")
    half = min(span, tile) // 2
    rows = min(span, length)
    # Distinct windows: every (border, block of rows) pair, or a random subset of them.
    blocks = length // rows
    places = borders * blocks
    chosen = rng.choice(places, size=min(windows, places), replace=False)
    diffs = []
    for place in sorted(int(p) for p in chosen):
        border = tile * (place // blocks + 1)
        start = rows * (place % blocks)
        lo, hi = max(0, border - half), min(across, border + half)
        if transpose:
            block = regions.read(lo, start, hi - lo, rows).transpose(1, 0, 2)
        else:
            block = regions.read(start, lo, rows, hi - lo)
        profile = _profile(block)
        # Pad so that column `half - 1` is always the pair (border - 1, border).
        left = half - (border - lo)
        padded = np.full((rows, 2 * half - 1), np.nan)
        padded[:, left:left + profile.shape[1]] = profile
        diffs.append(padded)
    data = np.concatenate(diffs)  # (windows * rows, offsets)
    at_border = data[:, half - 1]
    inside = np.delete(data, half - 1, axis=1)
    offsets = np.nanmean(inside, axis=0)
    offsets = offsets[np.isfinite(offsets)]
    spread = float(offsets.std()) if len(offsets) > 1 else 0.0
    border_mean = float(np.nanmean(at_border))
    z = (border_mean - float(offsets.mean())) / spread if spread > 0 else 0.0
    return SeamStats(
        direction=name, borders=borders, windows=len(chosen),
        pairs=int(np.isfinite(at_border).sum()),
        border_mean=border_mean, inside_mean=float(np.nanmean(inside)),
        border_p95=float(np.nanpercentile(at_border, 95)),
        inside_p95=float(np.nanpercentile(inside, 95)), z=z,
    )


def seam_check(
    regions: Regions, tile: int, windows: int = 64, span: int = 128, seed: int = 0
) -> list[SeamStats]:
    """Seam statistics for vertical and horizontal tile borders (those the image has)."""
    if tile < 4:
        raise GigasynthError(f"--tile must be at least 4 px, not {tile}")
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
            f"the image ({regions.width}x{regions.height}) has no tile border for --tile {tile}"
        )
    return results
