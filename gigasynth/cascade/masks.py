"""Procedural tissue masks: where a synthetic slide has tissue (True) and glass (False).

The first input of a cascade is a tissue/background mask at a coarse resolution
(16 µm per pixel); `generate_tissue_mask(seed, width, height, mpp)` draws one. Everything is
drawn in micrometres, never in pixels: the field is `width * mpp` x `height * mpp` µm, each
pixel is the point at its centre, and a pixel is tissue when a smooth function of that
physical point is positive. The same seed and physical field at another `mpp` therefore give
the same outline, sampled at that resolution.

What is drawn (`draw_layout`, all from one numpy Generator seeded by the keyed hash of the
seed, stream `Stream.TISSUE_MASK`; the draw is plain data, `TissueLayout`):

- **Pieces** (sections, biopsies): 1 (p 0.5), 2 (0.3) or 3 (0.2) ellipses. Their long
  diameter is 0.7-1.5x the field's side (the square root of its area) divided by the square
  root of the piece count, clipped to 1-10 mm, as sections and cores are; they are
  0.3-0.9 as wide as long, at any angle, centred anywhere in the field or a little beyond
  it, so in a small field a piece may run off the edge. The fraction of glass then varies
  by seed and stays mostly within 20-80 % for fields of 2-10 mm (tests/test_masks.py
  measures it). A field wider than 10 mm gets that count once per 10 x 10 mm of its
  area (pieces stay at most 10 mm), so its tissue fraction stays in the same range
  instead of the field turning to glass.
- **Edges**: a piece is tissue where `(1 - rho) * r + n > 0`, with `rho` the ellipse's
  normalised radius, `r` its mean semi-axis and `n` keyed value noise (smoothstep
  interpolation of uniform values on a square lattice in µm) in three octaves: lattice
  spacing r/2 with amplitude r/4 (lobes, an irregular outline), 250 µm with 60 µm and
  100 µm with 15 µm. The noise has no content below 100 µm, so edges are smooth at the
  cascade's 16 µm per pixel (a cut's edge, not the ragged Otsu edge of a real thumbnail).
  The lattice values are keyed by (seed, piece, octave, lattice row, column), so they
  are the same whatever the field's size or resolution.
- **Holes** (vessels, fat, artefacts): per piece a Poisson number with a density drawn
  per seed, 0.3-3 per mm² (log-uniform); each an ellipse 50-500 µm across (log-uniform),
  0.5-1 as wide as long, its outline bent by two random harmonics, centred inside the
  piece (a hole on the edge becomes a notch).
- **Clefts** (tears, retraction gaps): per piece a Poisson number, mean 0-2 drawn per seed
  times the piece's mean diameter over 3 mm; each a circular arc 0.3-3 mm long with a
  radius of curvature of 0.5-5 mm, 20-80 µm wide at its middle and tapering to nothing
  at its ends.

Calibration (`calibrate_masks`): the piece sizes above are a prior; a cascade states a
`mask_coverage`, a factor on every piece's diameter, fitted so that fields the size of a
slide's **train region** have that region's median tissue fraction (measured at 16 µm/px by
`gigasynth.data.tissue.tissue_mask`, the region's own Otsu threshold). Only the train region
is read (gigasynth.data.regions), so nothing of the validation or test regions enters a
generated layout. The sample slide's train region (1.1 x 0.44 mm) holds 10 % tissue at
16 µm/px; the bundled cascade's `mask_coverage` and its measurement are in its card and in
docs/results/mask-calibration.json. The real mask's ragged Otsu fringe and specks are not
drawn: a cascade's first stage draws its own edge texture, so the mask keeps to the outline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gigasynth.data.regions import Region
from gigasynth.errors import GigasynthError
from gigasynth.geometry import Window
from gigasynth.keyed import Stream, keyed_uniform, mix_int

MAX_MASK_PIXELS = 1 << 26  # the cascade's layout bound (GIGASYNTH_MAX_LAYOUT_PIXELS' default)
BAND_ROWS = 512  # rows rendered at a time: memory follows the band, not the mask

PIECE_COUNTS = (1, 2, 3)
PIECE_COUNT_P = (0.5, 0.3, 0.2)
PIECE_DIAMETER_UM = (1000.0, 10000.0)
FINE_OCTAVES = ((250.0, 60.0), (100.0, 15.0))  # (lattice spacing, amplitude) in µm
HOLE_DIAMETER_UM = (50.0, 500.0)
HOLE_DENSITY_PER_MM2 = (0.3, 3.0)
TEAR_LENGTH_UM = (300.0, 3000.0)
TEAR_WIDTH_UM = (20.0, 80.0)
TEAR_RADIUS_UM = (500.0, 5000.0)
MAX_HOLES_PER_PIECE = 400


@dataclass(frozen=True)
class Piece:
    """An elliptical piece of tissue: centre (µm), semi-axes (µm), angle (rad)."""

    cy: float
    cx: float
    a: float
    b: float
    angle: float

    @property
    def radius(self) -> float:
        """The mean semi-axis, µm: the scale of its outline's coarse noise."""
        return math.sqrt(self.a * self.b)

    @property
    def reach(self) -> float:
        """How far tissue can extend from the centre, µm (long semi-axis plus all noise)."""
        return self.a + self.radius / 4 + sum(amp for _, amp in FINE_OCTAVES)


@dataclass(frozen=True)
class Hole:
    """A gap in a piece: centre (µm), semi-axes (µm), angle, and two outline harmonics."""

    cy: float
    cx: float
    a: float
    b: float
    angle: float
    bend2: tuple[float, float]  # (relative amplitude, phase) of the 2nd harmonic
    bend3: tuple[float, float]  # and of the 3rd


@dataclass(frozen=True)
class Tear:
    """A cleft: a circular arc (centre, radius, start angle, span in rad) of a given width."""

    cy: float
    cx: float
    radius: float
    start: float
    span: float
    width: float


@dataclass(frozen=True)
class TissueLayout:
    """Everything `draw_layout` draws for one field: the randomness, as data."""

    pieces: tuple[Piece, ...]
    holes: tuple[Hole, ...]
    tears: tuple[Tear, ...]


def _check(seed: int, width: int, height: int, mpp: float) -> None:
    """One-line GigasynthError for arguments no mask can be drawn for."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise GigasynthError(f"seed must be an integer, got {seed!r}")
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise GigasynthError(f"mask {name} must be a positive integer, got {value!r}")
    if width * height > MAX_MASK_PIXELS:
        raise GigasynthError(
            f"mask of {width}x{height} px exceeds {MAX_MASK_PIXELS:,} pixels; "
            "use a coarser µm per pixel"
        )
    if isinstance(mpp, bool) or not isinstance(mpp, int | float | np.floating):
        raise GigasynthError(f"mpp must be a number of µm per pixel, got {mpp!r}")
    if not math.isfinite(mpp) or mpp <= 0:
        raise GigasynthError(f"mpp must be a positive finite number of µm per pixel, got {mpp}")


def _areas(side: float) -> int:
    """How many squares of the largest piece's diameter a field of `side` µm spans (at least 1)."""
    return max(1, math.ceil((side / PIECE_DIAMETER_UM[1]) ** 2 - 1e-9))


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def draw_layout(
    seed: int, height_um: float, width_um: float, coverage: float = 1.0
) -> TissueLayout:
    """The pieces, holes and clefts of a field of `height_um` x `width_um` µm (see above);
    `coverage` scales every piece's diameter (the calibration's one parameter)."""
    rng = np.random.default_rng(mix_int(int(seed), int(Stream.TISSUE_MASK), 0, 0))
    side = math.sqrt(height_um * width_um)
    # fields wider than the largest piece hold more of them: one draw per 10 x 10 mm
    count = int(rng.choice(PIECE_COUNTS, p=PIECE_COUNT_P)) * _areas(side)
    hole_density = _log_uniform(rng, *HOLE_DENSITY_PER_MM2) / 1e6  # per µm²
    tear_rate = float(rng.uniform(0.0, 2.0))
    pieces: list[Piece] = []
    holes: list[Hole] = []
    tears: list[Tear] = []
    for _ in range(count):
        diameter = side * _log_uniform(rng, 0.9, 1.7) / math.sqrt(count)
        a = coverage * float(np.clip(diameter, *PIECE_DIAMETER_UM)) / 2
        b = a * float(rng.uniform(0.25, 0.8))
        piece = Piece(
            cy=float(rng.uniform(-0.1, 1.1)) * height_um,
            cx=float(rng.uniform(-0.1, 1.1)) * width_um,
            a=a,
            b=b,
            angle=float(rng.uniform(0.0, math.pi)),
        )
        pieces.append(piece)
        n_holes = min(int(rng.poisson(hole_density * math.pi * a * b)), MAX_HOLES_PER_PIECE)
        for _ in range(n_holes):
            y, x = _inside(rng, piece, 0.9)
            r = _log_uniform(rng, *HOLE_DIAMETER_UM) / 2
            holes.append(
                Hole(
                    cy=y,
                    cx=x,
                    a=r,
                    b=r * float(rng.uniform(0.5, 1.0)),
                    angle=float(rng.uniform(0.0, math.pi)),
                    bend2=(float(rng.uniform(0.0, 0.2)), float(rng.uniform(0.0, 2 * math.pi))),
                    bend3=(float(rng.uniform(0.0, 0.15)), float(rng.uniform(0.0, 2 * math.pi))),
                )
            )
        for _ in range(int(rng.poisson(tear_rate * 2 * piece.radius / 3000.0))):
            y, x = _inside(rng, piece, 0.8)
            longest = max(TEAR_LENGTH_UM[0], min(2 * a, TEAR_LENGTH_UM[1]))
            length = _log_uniform(rng, TEAR_LENGTH_UM[0], longest)
            radius = _log_uniform(rng, *TEAR_RADIUS_UM)
            # the arc's middle is (y, x); its centre lies `radius` away in a random direction
            normal = float(rng.uniform(0.0, 2 * math.pi))
            cy, cx = y + radius * math.sin(normal), x + radius * math.cos(normal)
            span = min(length / radius, math.pi)
            tears.append(
                Tear(
                    cy=cy,
                    cx=cx,
                    radius=radius,
                    start=normal + math.pi - span / 2,
                    span=span,
                    width=float(rng.uniform(*TEAR_WIDTH_UM)),
                )
            )
    return TissueLayout(tuple(pieces), tuple(holes), tuple(tears))


def _inside(rng: np.random.Generator, piece: Piece, within: float) -> tuple[float, float]:
    """A uniform point of the piece's ellipse shrunk to `within` of its size, µm."""
    r = within * math.sqrt(float(rng.random()))
    t = float(rng.uniform(0.0, 2 * math.pi))
    u, v = r * piece.a * math.cos(t), r * piece.b * math.sin(t)
    c, s = math.cos(piece.angle), math.sin(piece.angle)
    return piece.cy + u * s + v * c, piece.cx + u * c - v * s


def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def value_noise(key: int, spacing: float, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Keyed value noise in [-1, 1] at the grid of points `ys` x `xs` (µm), (len(ys), len(xs)).

    Lattice point (i, j) at (i * spacing, j * spacing) µm holds a keyed uniform value of
    (key, i, j); between them the values are blended with smoothstep weights (C1 smooth),
    first along x for the lattice rows needed, then along y.
    """
    fy, fx = ys / spacing, xs / spacing
    iy, ix = np.floor(fy).astype(np.int64), np.floor(fx).astype(np.int64)
    y0, x0 = int(iy.min()), int(ix.min())
    rows, cols = int(iy.max()) - y0 + 2, int(ix.max()) - x0 + 2
    lattice = keyed_uniform([key], 1, rows, cols, Window(y0, x0))[0, 0].numpy()
    lattice = 2.0 * lattice.astype(np.float64) - 1.0
    wx = _smoothstep(fx - ix)
    along_x = lattice[:, ix - x0] * (1 - wx) + lattice[:, ix - x0 + 1] * wx
    wy = _smoothstep(fy - iy)[:, None]
    return along_x[iy - y0] * (1 - wy) + along_x[iy - y0 + 1] * wy


def _span(centre: float, reach: float, mpp: float, n: int) -> slice:
    """The pixels whose centres lie within `reach` µm of `centre` on an axis of n pixels."""
    lo = max(0, math.floor((centre - reach) / mpp - 0.5))
    hi = min(n, math.ceil((centre + reach) / mpp + 0.5))
    return slice(lo, max(lo, hi))


def _local(piece_or_hole: Piece | Hole, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, ...]:
    """Coordinates (u along the long axis, v across) of the grid `ys` x `xs` in µm."""
    dy, dx = ys[:, None] - piece_or_hole.cy, xs[None, :] - piece_or_hole.cx
    c, s = math.cos(piece_or_hole.angle), math.sin(piece_or_hole.angle)
    return dx * c + dy * s, -dx * s + dy * c


def _paint_band(layout: TissueLayout, seed: int, band: np.ndarray, row0: int, mpp: float) -> None:
    """Render the rows of `band` (its first row is mask row `row0`) in place."""
    rows, width = band.shape
    ys_all = (np.arange(row0, row0 + rows) + 0.5) * mpp

    def window(cy: float, cx: float, reach: float) -> tuple[slice, slice] | None:
        ry = _span(cy - row0 * mpp, reach, mpp, rows)
        rx = _span(cx, reach, mpp, width)
        return (ry, rx) if ry.stop > ry.start and rx.stop > rx.start else None

    for index, piece in enumerate(layout.pieces):
        win = window(piece.cy, piece.cx, piece.reach)
        if win is None:
            continue
        ys, xs = ys_all[win[0]], (np.arange(win[1].start, win[1].stop) + 0.5) * mpp
        u, v = _local(piece, ys, xs)
        field = (1.0 - np.sqrt((u / piece.a) ** 2 + (v / piece.b) ** 2)) * piece.radius
        octaves = ((piece.radius / 2, piece.radius / 4), *FINE_OCTAVES)
        for octave, (spacing, amplitude) in enumerate(octaves):
            key = mix_int(int(seed), int(Stream.TISSUE_MASK), 1 + index, octave)
            field += amplitude * value_noise(key, spacing, ys, xs)
        band[win] |= field > 0
    for hole in layout.holes:
        win = window(hole.cy, hole.cx, hole.a * 1.4)
        if win is None:
            continue
        ys, xs = ys_all[win[0]], (np.arange(win[1].start, win[1].stop) + 0.5) * mpp
        u, v = _local(hole, ys, xs)
        theta = np.arctan2(v, u)
        bend = 1.0 + hole.bend2[0] * np.cos(2 * theta + hole.bend2[1])
        bend += hole.bend3[0] * np.cos(3 * theta + hole.bend3[1])
        band[win] &= ~((u / hole.a) ** 2 + (v / hole.b) ** 2 < bend**2)
    for tear in layout.tears:
        win = window(tear.cy, tear.cx, tear.radius + tear.width)
        if win is None:
            continue
        ys, xs = ys_all[win[0]], (np.arange(win[1].start, win[1].stop) + 0.5) * mpp
        dy, dx = ys[:, None] - tear.cy, xs[None, :] - tear.cx
        offset = np.abs(np.hypot(dy, dx) - tear.radius)
        angle = np.arctan2(dy, dx) - tear.start
        along = np.mod(angle, 2 * math.pi) / tear.span  # 0..1 on the arc
        half = tear.width / 2 * np.sqrt(np.clip(np.sin(math.pi * along), 0.0, None))
        band[win] &= ~((along < 1.0) & (offset < half))


def render_layout(
    layout: TissueLayout, seed: int, width: int, height: int, mpp: float
) -> np.ndarray:
    """The (height, width) bool mask of `layout` sampled at pixel centres, `mpp` µm apart."""
    mask = np.zeros((height, width), dtype=bool)
    for row0 in range(0, height, BAND_ROWS):
        _paint_band(layout, seed, mask[row0 : row0 + BAND_ROWS], row0, mpp)
    return mask


def generate_tissue_mask(
    seed: int, width: int, height: int, mpp: float, coverage: float = 1.0
) -> np.ndarray:
    """A (height, width) bool tissue mask (True = tissue) at `mpp` µm/px, a pure function of
    its arguments (see the module docstring for what it draws)."""
    _check(seed, width, height, mpp)
    check_coverage(coverage)
    mpp = float(mpp)
    layout = draw_layout(int(seed), height * mpp, width * mpp, float(coverage))
    return render_layout(layout, int(seed), int(width), int(height), mpp)


# ---------------------------------------------------------------- calibration

CALIBRATION_MPP = 16.0  # µm/px of the measurement (a cascade's tissue-mask resolution)
CALIBRATION_SEEDS = 40  # generated fields whose median tissue fraction is fitted
COVERAGE_RANGE = (0.1, 10.0)


def check_coverage(coverage: float) -> None:
    """One-line GigasynthError unless `coverage` is a number within COVERAGE_RANGE."""
    low, high = COVERAGE_RANGE
    if (
        isinstance(coverage, bool)
        or not isinstance(coverage, int | float | np.floating)
        or not low <= coverage <= high
    ):
        raise GigasynthError(
            f"mask coverage must be a number in [{low:g}, {high:g}], not {coverage!r}"
        )


@dataclass(frozen=True)
class MaskCalibration:
    """What `calibrate_masks` measured and fitted (JSON-ready with `dataclasses.asdict`)."""

    coverage: float  # the fitted factor on piece diameters
    tissue_fraction: float  # the region's, at `mpp`
    generated_fraction: float  # the median of CALIBRATION_SEEDS fields at `coverage`
    slide: str
    region: str  # level-0 px, x0,y0,x1,y1
    mpp: float
    width: int  # the region at `mpp`, px
    height: int


def region_tissue(
    slide: str | Path, region: str = "train", mpp: float = CALIBRATION_MPP
) -> tuple[np.ndarray, Region]:
    """The tissue mask of a slide's region at `mpp` µm/px (box-averaged, then the region's
    own Otsu saturation threshold), and the region it read."""
    from gigasynth.data.sources import SlideRegions, slide_mpp
    from gigasynth.data.tissue import tissue_mask

    probe = SlideRegions(Path(slide), 1.0, region)
    level0 = slide_mpp(probe.slide)
    if level0 is None:
        raise GigasynthError(f"slide {slide} states no pixel size: it cannot calibrate masks")
    regions = SlideRegions(Path(slide), mpp / level0, region)
    return tissue_mask(regions.read(0, 0, regions.height, regions.width)), regions.region


def median_fraction(coverage: float, width: int, height: int, mpp: float) -> float:
    """The median tissue fraction of CALIBRATION_SEEDS generated width x height fields."""
    return float(
        np.median(
            [
                generate_tissue_mask(seed, width, height, mpp, coverage).mean()
                for seed in range(CALIBRATION_SEEDS)
            ]
        )
    )


def calibrate_masks(
    slide: str | Path, region: str = "train", mpp: float = CALIBRATION_MPP
) -> MaskCalibration:
    """Fit `coverage` so that generated fields of the region's size have the region's
    tissue fraction (median over CALIBRATION_SEEDS seeds; bisection on log coverage). Only
    the region's pixels are read: calibrate on the train region."""
    mask, read = region_tissue(slide, region, mpp)
    height, width = mask.shape
    target = float(mask.mean())
    if not 0 < target < 1:
        raise GigasynthError(
            f"region {read} of {slide} is all {'glass' if target == 0 else 'tissue'} at "
            f"{mpp:g} µm/px: nothing to calibrate a tissue fraction on"
        )
    low, high = (math.log(c) for c in COVERAGE_RANGE)
    for _ in range(24):  # the median is a step function of coverage: bisect to ~1e-6
        middle = (low + high) / 2
        if median_fraction(math.exp(middle), width, height, mpp) < target:
            low = middle
        else:
            high = middle
    coverage = round(math.exp((low + high) / 2), 4)
    return MaskCalibration(
        coverage=coverage,
        tissue_fraction=round(target, 6),
        generated_fraction=round(median_fraction(coverage, width, height, mpp), 6),
        slide=Path(slide).name,
        region=str(read),
        mpp=mpp,
        width=width,
        height=height,
    )


def mask_size(size: tuple[int, int], factor: int) -> tuple[int, int]:
    """The (width, height) of the tissue mask generated for a slide of `size` px whose
    mask pixel spans factor x factor slide pixels: each side rounded up, so the mask
    covers any size (the slide is the top-left crop of what the mask gives)."""
    width, height = size
    if width < 1 or height < 1:
        raise GigasynthError(f"the slide's size {width}x{height} must be at least 1x1 px")
    return -(-width // factor), -(-height // factor)
