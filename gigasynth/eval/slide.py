"""Slide-scale evaluation: held-out real tissue against a synthetic field, at several zooms.

Patch metrics on small crops upsampled for Inception cannot see what a pathologist sees
first at low zoom: whether the field has background, glands and stroma at the right
sizes. This compares a real slide region (by default the held-out `test` region of
gigasynth.data.regions, background included) with a synthetic field (an OME-Zarr output,
an image, a folder of patches or an array) at one pixel size:

- per zoom (`scales`, area-averaging downsamples of the common pixel size): KID with a
  bootstrap interval, and FID, on `n` uniformly placed `crop` px crops of each side;
- luminance energy per octave band of a Laplacian pyramid (band k holds detail of
  2^k-2^(k+1) px: finest "1-2 px"), bands up to 1/8 of the field, synthetic / real;
- optical-density colour statistics: haematoxylin and eosin by Ruifrok-Johnston colour
  deconvolution, mean and std in tissue, and the tissue / near-white background fractions.

API (stable): `evaluate_slide(real, fake, ...) -> SlideEvaluation` (`evaluate_slides` for
several fakes against the same real crops); `.to_dict()` / `.to_json()` give everything
measured, `.lines()` a summary; `gigasynth.eval.report.write_report` draws it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gigasynth.data.sources import SlideRegions, load_folder, load_npz, slide_mpp
from gigasynth.errors import FieldError, GigasynthError
from gigasynth.eval.copies import CopyCheck, copy_check
from gigasynth.eval.feature_distances import (
    KID_BOOTSTRAP_MIN,
    KID_RESAMPLES,
    check_bootstrap,
    frechet_distance,
    kernel_inception_distance,
    kid_bootstrap,
)
from gigasynth.eval.histology import (
    BACKGROUND_OD,
    LUMA,
    Histology,
    far_glass,
    histology,
    optical_density,
    stain_matrix,
)
from gigasynth.eval.inception import inception_features
from gigasynth.eval.inputs import (
    IMAGE_FILES,
    ArrayRegions,
    Regions,
    ZarrRegions,
    is_ome_zarr,
)
from gigasynth.eval.swd import laplacian_pyramid
from gigasynth.images import read_rgb

DEFAULT_SCALES = (1, 4, 16)
DEFAULT_N = 256
DEFAULT_CROP = 64
BOOTSTRAP = KID_RESAMPLES
CONFIDENCE = 0.95
IN_MEMORY_PIXELS = 1 << 26  # fields up to 64 Mpx are read once, whole
FIELD_SIDE = 4096  # band and colour statistics: the whole field up to this side, else windows
FIELD_WINDOWS = 4
STACK_FIELDS = 64  # band and colour statistics of a stack: up to this many of its images
MPP_TOLERANCE = 0.01  # a downsample within 1 % of a whole number is taken as that number
TISSUE_CROP_MIN = 0.5  # a crop counts as tissue when at least half its pixels are not background


@dataclass(frozen=True)
class ScaleResult:
    """KID (with its bootstrap interval) and FID at one zoom, on n crops per side, and KID
    on the tissue crops of those alone.

    `real_crops` / `fake_crops`: how many distinct crop positions (or images, for a
    stack) each side offered; `real_tiles` / `fake_tiles`: how many crops fit without
    overlap (the independent evidence a field holds at this zoom). Intervals come from a
    spatial block bootstrap: crops are grouped by the crop-sized cell of the field their
    centre falls in, and whole cells are resampled (`real_blocks`, `fake_blocks` of them).
    Tissue crops have at least TISSUE_CROP_MIN of their pixels off the background;
    `kid_tissue` is None when either side has fewer than three.
    """

    scale: int
    mpp: float | None
    crop: int
    n: int
    kid: float
    kid_low: float
    kid_high: float
    fid: float
    real_field: tuple[int, int]  # (width, height) at this scale
    fake_field: tuple[int, int] | None  # None for a stack of patches
    real_crops: int
    fake_crops: int
    real_tiles: int
    fake_tiles: int | None = None  # None for a stack (its images are independent)
    real_blocks: int = 0
    fake_blocks: int = 0
    tissue_real: int = 0  # tissue crops among the n of each side
    tissue_fake: int = 0
    kid_tissue: float | None = None
    kid_tissue_low: float | None = None
    kid_tissue_high: float | None = None


@dataclass(frozen=True)
class Band:
    """Mean squared luminance Laplacian coefficient in one octave band, and the ratio."""

    low_px: int
    high_px: int
    real: float
    fake: float
    ratio: float


@dataclass(frozen=True)
class ColourStats:
    """Stain amounts (optical density) by colour deconvolution, in tissue pixels."""

    haematoxylin_mean: float
    haematoxylin_std: float
    eosin_mean: float
    eosin_std: float
    tissue_fraction: float
    background_fraction: float
    pixels: int
    glass_std: float | None = None  # luminance std (0-255) of glass 20 µm from tissue
    glass_pixels: int = 0  # how many pixels that glass held


@dataclass
class SlideEvaluation:
    """Everything `evaluate_slide` measured; `examples` (crops for the report) stay out of JSON."""

    real: str
    real_region: str
    real_downsample: float
    fake: str
    mpp: float | None  # of the comparison at scale 1: the real's at real_downsample
    fake_mpp: float | None  # as the fake states it (or as given)
    seed: int
    bootstrap: int
    confidence: float
    scales: list[ScaleResult]
    bands: list[Band]
    band_fields: dict[str, Any]
    colour_real: ColourStats
    colour_fake: ColourStats
    histology_real: Histology | None = None  # None without a pixel size
    histology_fake: Histology | None = None
    examples: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: inputs, per-scale KID/FID, bands, colour (see README, `gigasynth eval`)."""
        return {
            "real": self.real,
            "real_region": self.real_region,
            "real_downsample": self.real_downsample,
            "fake": self.fake,
            "mpp": self.mpp,
            "fake_mpp": self.fake_mpp,
            "seed": self.seed,
            "bootstrap": self.bootstrap,
            "confidence": self.confidence,
            "scales": [asdict(s) for s in self.scales],
            "bands": [
                {**asdict(b), "ratio": b.ratio if math.isfinite(b.ratio) else None}
                for b in self.bands
            ],
            "band_fields": self.band_fields,
            "colour": {"real": asdict(self.colour_real), "fake": asdict(self.colour_fake)},
            "histology": {
                "real": asdict(self.histology_real) if self.histology_real else None,
                "fake": asdict(self.histology_fake) if self.histology_fake else None,
            },
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def lines(self) -> list[str]:
        """Human-readable summary, every figure with its n."""
        out = [
            f"real {self.real} region {self.real_region} at downsample "
            f"{self.real_downsample:g}; fake {self.fake}; "
            f"{_mpp_text(self.mpp)}"
        ]
        for s in self.scales:
            tissue = (
                f"tissue only KID {s.kid_tissue:.4f} [{s.kid_tissue_low:.4f}, "
                f"{s.kid_tissue_high:.4f}]"
                if s.kid_tissue is not None
                else "tissue only: too few tissue crops"
            )
            out.append(
                f"scale {s.scale}x ({_mpp_text(s.mpp)}, {s.crop} px crops): "
                f"KID {s.kid:.4f} [{s.kid_low:.4f}, {s.kid_high:.4f}] "
                f"FID {s.fid:.1f} (n={s.n}; disjoint real {s.real_tiles}, bootstrap blocks "
                f"{s.real_blocks}/{s.fake_blocks}); {tissue} "
                f"(tissue crops {s.tissue_real}/{s.tissue_fake})"
            )
        if self.bands:
            out.append(
                "luminance band energy, synthetic / real: "
                + ", ".join(f"{b.low_px}-{b.high_px} px {b.ratio:.2f}" for b in self.bands)
            )
        for name, c in (("real", self.colour_real), ("fake", self.colour_fake)):
            out.append(
                f"{name}: background {c.background_fraction:.1%}, tissue OD "
                f"H {c.haematoxylin_mean:.3f}±{c.haematoxylin_std:.3f} "
                f"E {c.eosin_mean:.3f}±{c.eosin_std:.3f} (n={c.pixels:,} px); glass noise "
                + (
                    f"{c.glass_std:.2f} (luminance std, {c.glass_pixels:,} px 20 µm from tissue)"
                    if c.glass_std is not None
                    else "not measured (no far glass, or no pixel size)"
                )
            )
        for name, h in (("real", self.histology_real), ("fake", self.histology_fake)):
            if h is not None:
                out.append(f"{name}: {histology_text(h)}")
        return out


def histology_text(h: Histology) -> str:
    """One line of a Histology's figures."""

    def number(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    return (
        f"nuclei {number(h.nuclei_per_mm2, 0)} per mm² of tissue (n={h.nuclei}, "
        f"{h.tissue_mm2:.3f} mm²), elongation {number(h.nucleus_elongation, 2)}, "
        f"coherence {number(h.coherence, 3)}, eosin-dominant {number(h.eosin_dominant, 3)}"
    )


def _mpp_text(mpp: float | None) -> str:
    return f"{mpp:.3g} µm/px" if mpp else "pixel size unknown"


# ---------------------------------------------------------------- pixels and statistics


def area_downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (H // f, W // f, 3): the mean of each f x f block, rounded."""
    if factor == 1:
        return image
    h, w = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[: h * factor, : w * factor].reshape(h, factor, w, factor, 3)
    return np.round(blocks.mean(axis=(1, 3), dtype=np.float64)).astype(np.uint8)


def band_count(side: int) -> int:
    """Octave bands whose upper end is at most 1/8 of `side` (band k ends at 2^(k+1) px)."""
    return max(0, int(math.floor(math.log2(side / 8)))) if side >= 16 else 0


def band_energies(image: np.ndarray, bands: int) -> np.ndarray:
    """Mean squared coefficient of the first `bands` luminance Laplacian levels (finest first)."""
    luma = torch.from_numpy(image.astype(np.float32) @ LUMA.astype(np.float32) / 255.0)
    levels = laplacian_pyramid(luma[None, None], min_size=2)[:-1]
    if len(levels) < bands:
        raise GigasynthError(f"a {image.shape[1]}x{image.shape[0]} field has no {bands} bands")
    return np.array([float((lv.double() ** 2).mean()) for lv in levels[:bands]])


class _ColourSums:
    """Running sums for ColourStats over several fields."""

    def __init__(self) -> None:
        self.sums = np.zeros(4)  # H, H^2, E, E^2 in tissue
        self.tissue = 0
        self.pixels = 0
        self.glass = np.zeros(3)  # count, sum and sum of squares of far glass's luminance

    def add(self, image: np.ndarray, mpp: float | None = None) -> None:
        if mpp is not None:
            luma = image[far_glass(image, mpp)].astype(np.float64) @ LUMA
            self.glass += [len(luma), luma.sum(), (luma**2).sum()]
        od = optical_density(image.reshape(-1, 3))
        tissue = ~(od < BACKGROUND_OD).all(axis=1)
        stains = od[tissue] @ stain_matrix().astype(np.float32)
        h, e = stains[:, 0].astype(np.float64), stains[:, 1].astype(np.float64)
        self.sums += [h.sum(), (h**2).sum(), e.sum(), (e**2).sum()]
        self.tissue += int(tissue.sum())
        self.pixels += len(od)

    def stats(self) -> ColourStats:
        n = max(self.tissue, 1)
        h_mean, e_mean = self.sums[0] / n, self.sums[2] / n
        h_std = math.sqrt(max(self.sums[1] / n - h_mean**2, 0.0))
        e_std = math.sqrt(max(self.sums[3] / n - e_mean**2, 0.0))
        tissue = self.tissue / max(self.pixels, 1)
        count, total, squares = self.glass
        glass_std = (
            math.sqrt(max(squares / count - (total / count) ** 2, 0.0)) if count >= 2 else None
        )
        return ColourStats(
            float(h_mean),
            h_std,
            float(e_mean),
            e_std,
            tissue,
            1.0 - tissue,
            self.pixels,
            glass_std,
            int(count),
        )


# ---------------------------------------------------------------- inputs


@dataclass
class _Fake:
    """The synthetic side: one large field, or a stack of equal patches."""

    name: str
    mpp: float | None
    field: Regions | None = None
    stack: np.ndarray | None = None


def _check_images(images: np.ndarray, name: str) -> np.ndarray:
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or images.shape[-1] != 3:
        raise GigasynthError(
            f"{name}: expected (H, W, 3) or (N, H, W, 3) uint8 images, got "
            f"{images.shape} {images.dtype}"
        )
    return images


def _open_fake(fake: str | Path | np.ndarray, mpp: float | None) -> _Fake:
    if isinstance(fake, np.ndarray):
        images = _check_images(fake, "fake array")
        name = f"array {'x'.join(map(str, images.shape))}"
        if images.ndim == 3:
            return _Fake(name, mpp, field=ArrayRegions(images))
        return _Fake(name, mpp, stack=images)
    path = Path(fake)
    if not path.exists():
        raise GigasynthError(f"fake not found: {path}")
    if is_ome_zarr(path):
        field = ZarrRegions(path)
        return _Fake(str(path), mpp or field.mpp, field=field)
    if path.is_dir():
        return _Fake(str(path), mpp, stack=load_folder(path))
    if path.suffix == ".npz":
        return _Fake(str(path), mpp, stack=_check_images(load_npz(path), str(path)))
    if path.suffix.lower() in IMAGE_FILES:
        return _Fake(str(path), mpp, field=ArrayRegions(read_rgb(path)))
    raise GigasynthError(
        f"fake {path}: not an OME-Zarr output, an image, a folder of images or an .npz"
    )


def _downsample_for(real: Path, fake: _Fake, override: float | None) -> float:
    """Downsample of the slide's level 0 that matches the fake's pixel size."""
    if override is not None:
        if not override >= 1:
            raise FieldError(f"[real_downsample] must be at least 1, not {override}")
        return float(override)
    if fake.mpp is None:
        raise FieldError(
            f"the fake {fake.name} states no pixel size",
            "give its µm/px ([fake_mpp]) or [real_downsample]",
        )
    import openslide

    try:
        level0 = slide_mpp(openslide.OpenSlide(str(real)))
    except (openslide.OpenSlideError, OSError) as exc:
        raise GigasynthError(f"cannot read slide {real}: {exc}") from None
    if level0 is None:
        raise FieldError(
            f"slide {real} states no pixel size (openslide.mpp-x)", "give [real_downsample]"
        )
    d = fake.mpp / level0
    if d < 1 - MPP_TOLERANCE:
        raise GigasynthError(
            f"the fake ({fake.mpp:g} µm/px) is finer than level 0 of {real} ({level0:g} µm/px)"
        )
    whole = max(1, round(d))
    return float(whole) if abs(d - whole) <= MPP_TOLERANCE * d else d


def _in_memory(regions: Regions) -> Regions:
    """A small field read once (crops and statistics then cost no further reads)."""
    if isinstance(regions, ArrayRegions) or regions.height * regions.width > IN_MEMORY_PIXELS:
        return regions
    return ArrayRegions(np.ascontiguousarray(regions.read(0, 0, regions.height, regions.width)))


# ---------------------------------------------------------------- crops


@dataclass
class _Crops:
    """One side's crops at one zoom: the pixels, the count of distinct positions (or
    images), the field's size and disjoint crops (None for a stack), each crop's block."""

    images: np.ndarray
    positions: int
    field: tuple[int, int] | None
    tiles: int | None
    blocks: np.ndarray | None

    def tissue(self) -> np.ndarray:
        """Which crops are tissue crops (TISSUE_CROP_MIN of their pixels off background)."""
        return tissue_fractions(self.images) >= TISSUE_CROP_MIN


def tissue_fractions(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> the fraction of each image's pixels that are not background
    (optical density at least BACKGROUND_OD in some channel, as ColourStats counts)."""
    od = optical_density(images)
    return (~(od < BACKGROUND_OD).all(axis=-1)).mean(axis=(1, 2))


def _field_crops(
    regions: Regions, scale: int, crop: int, n: int, rng: np.random.Generator, what: str
) -> _Crops:
    """n distinct uniformly placed crops at `scale`, each labelled with its block: the
    crop-sized cell of the field its centre falls in (for the block bootstrap)."""
    step = scale
    if isinstance(regions, ArrayRegions) and scale > 1:
        regions, step = ArrayRegions(area_downsample(regions.image, scale)), 1
    hs, ws = regions.height // step, regions.width // step
    if hs < crop or ws < crop:
        raise GigasynthError(
            f"{what} is {ws}x{hs} px at scale {scale}, smaller than a {crop} px "
            "crop: lower the scale or the crop"
        )
    nx = ws - crop + 1
    positions = (hs - crop + 1) * nx
    if n > positions:
        raise GigasynthError(
            f"{what} offers {positions} distinct {crop} px crops at scale {scale}, fewer than n={n}"
        )
    chosen = rng.choice(positions, n, replace=False)
    ys, xs = chosen // nx, chosen % nx
    crops = [
        area_downsample(regions.read(int(y) * step, int(x) * step, crop * step, crop * step), step)
        for y, x in zip(ys, xs, strict=True)
    ]
    cells_x = -(-ws // crop)
    blocks = ((ys + crop // 2) // crop) * cells_x + (xs + crop // 2) // crop
    return _Crops(np.stack(crops), positions, (ws, hs), (ws // crop) * (hs // crop), blocks)


def _stack_crops(
    stack: np.ndarray, scale: int, crop: int, n: int, rng: np.random.Generator, what: str
) -> _Crops:
    """One random crop of each of n distinct images, each downsampled by `scale`."""
    if n > len(stack):
        raise GigasynthError(f"{what} holds {len(stack)} images, fewer than n={n}")
    h, w = stack.shape[1] // scale, stack.shape[2] // scale
    if h < crop or w < crop:
        raise GigasynthError(
            f"{what}: images are {w}x{h} px at scale {scale}, smaller than a "
            f"{crop} px crop: lower the scale or the crop"
        )
    crops = []
    for i in rng.permutation(len(stack))[:n]:
        small = area_downsample(stack[i], scale)
        y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
        crops.append(small[y : y + crop, x : x + crop])
    return _Crops(np.stack(crops), len(stack), None, None, None)


# ---------------------------------------------------------------- whole-field statistics


def _fields(regions: Regions, rng: np.random.Generator) -> list[np.ndarray]:
    """The whole field, or FIELD_WINDOWS uniformly placed windows of at most FIELD_SIDE."""
    h, w = min(regions.height, FIELD_SIDE), min(regions.width, FIELD_SIDE)
    if (h, w) == (regions.height, regions.width):
        return [np.asarray(regions.read(0, 0, h, w))]
    return [
        np.asarray(
            regions.read(
                int(rng.integers(0, regions.height - h + 1)),
                int(rng.integers(0, regions.width - w + 1)),
                h,
                w,
            )
        )
        for _ in range(FIELD_WINDOWS)
    ]


def _field_summary(images: list[np.ndarray]) -> dict[str, Any]:
    h, w = images[0].shape[:2]
    return {"count": len(images), "width": int(w), "height": int(h)}


def _bands(real: list[np.ndarray], fake: list[np.ndarray]) -> list[Band]:
    side = min(min(im.shape[:2]) for im in real + fake)
    count = band_count(side)
    if count == 0:
        return []
    e_real = np.mean([band_energies(im, count) for im in real], axis=0)
    e_fake = np.mean([band_energies(im, count) for im in fake], axis=0)
    return [
        Band(2**k, 2 ** (k + 1), float(r), float(f), float(f / r) if r > 0 else math.inf)
        for k, (r, f) in enumerate(zip(e_real, e_fake, strict=True))
    ]


def _colour(images: list[np.ndarray], mpp: float | None) -> ColourStats:
    sums = _ColourSums()
    for im in images:
        sums.add(im, mpp)
    return sums.stats()


# ---------------------------------------------------------------- the evaluation


def evaluate_slide(
    real: str | Path,
    fake: str | Path | np.ndarray,
    *,
    scales: tuple[int, ...] | None = None,
    n: int = DEFAULT_N,
    crop: int = DEFAULT_CROP,
    seed: int = 0,
    real_region: str = "test",
    real_downsample: float | None = None,
    fake_mpp: float | None = None,
    bootstrap: int = BOOTSTRAP,
    confidence: float = CONFIDENCE,
    device: str | torch.device = "cpu",
    examples: int = 8,
) -> SlideEvaluation:
    """Compare a real slide region with a synthetic field at several zooms.

    real: a slide OpenSlide reads; `real_region` ('test', 'train' or 'x0,y0,x1,y1' in
      level-0 px, gigasynth.data.regions) is read whole, background included, at
      `real_downsample` of level 0 (default: the fake's µm/px over the slide's).
    fake: an OME-Zarr output (level 0; its µm/px from its metadata), an image file, a
      folder of equal images or an .npz (a stack of patches), or an array, (H, W, 3) a
      field or (N, H, W, 3) a stack, uint8. `fake_mpp` gives or overrides the fake's µm/px.
    scales: zooms as whole downsamples of the common pixel size (1 = native), each by
      area averaging (default: those of 1, 4, 16 at which the real region holds a
      crop). At each, n distinct `crop` px crops per side (uniformly placed in
      the real region and the fake field; one crop of each of n images of a stack) give
      KID with a `confidence` bootstrap interval over `bootstrap` resamples of both
      sets (a spatial block bootstrap where crops overlap, see ScaleResult), and FID, on
      Inception features (crops resized to 299 px); KID and its interval again on the
      tissue crops of each side alone.
    Bands and colour come from the whole real region and the whole fake field (windows
    of 4096 px of larger fields; up to 64 images of a stack) at native scale.
    `examples` crops per side and scale are kept for the report. Raises GigasynthError
    for unreadable inputs, regions outside the slide or empty, a scale the real region
    or the fake is too small for, n above the distinct crops (or images) available, and
    an unknown pixel size where one is needed; all before any Inception work.
    The same arguments give the same figures (crop positions come from `seed`).
    """
    return evaluate_slides(
        real,
        [fake],
        scales=scales,
        n=n,
        crop=crop,
        seed=seed,
        real_region=real_region,
        real_downsample=real_downsample,
        fake_mpp=fake_mpp,
        bootstrap=bootstrap,
        confidence=confidence,
        device=device,
        examples=examples,
    )[0]


def _fitting_scales(real: SlideRegions, crop: int) -> list[int]:
    """The DEFAULT_SCALES at which the real region holds a crop (the default when no scales
    are given: a small held-out region has no 16x figure worth the name)."""
    fitting = [s for s in DEFAULT_SCALES if min(real.height, real.width) // s >= crop]
    if not fitting:
        raise GigasynthError(
            f"the real region {real.region} is {real.width}x{real.height} px, smaller than "
            f"a {crop} px crop: lower the crop"
        )
    return fitting


def _count(blocks: np.ndarray | None, n: int) -> int:
    """How many blocks the bootstrap resamples (n independent items when unblocked)."""
    return n if blocks is None else len(np.unique(blocks))


@dataclass
class _RealSide:
    """The real region at one downsample: crops per scale, features when first needed."""

    slide: SlideRegions
    pixels: Regions
    crops: dict[int, _Crops]
    features: dict[int, np.ndarray] = field(default_factory=dict)


def evaluate_slides(
    real: str | Path,
    fakes: Sequence[str | Path | np.ndarray],
    *,
    scales: tuple[int, ...] | None = None,
    n: int = DEFAULT_N,
    crop: int = DEFAULT_CROP,
    seed: int = 0,
    real_region: str = "test",
    real_downsample: float | None = None,
    fake_mpp: float | None = None,
    bootstrap: int = BOOTSTRAP,
    confidence: float = CONFIDENCE,
    device: str | torch.device = "cpu",
    examples: int = 8,
) -> list[SlideEvaluation]:
    """`evaluate_slide` of each fake against the same real crops, real features computed once.

    Each result equals `evaluate_slide(real, fake, ...)` with the same arguments; `fake_mpp`
    applies to every fake. Every input is checked before any Inception work.
    """
    if scales is not None and (
        not scales or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in scales)
    ):
        raise GigasynthError(f"scales must be whole numbers of at least 1, not {scales}")
    if scales is not None and len(set(scales)) != len(scales):
        raise GigasynthError(f"scales repeat: {scales}")
    if n < KID_BOOTSTRAP_MIN:
        raise FieldError(f"[n] must be at least {KID_BOOTSTRAP_MIN}, not {n}")
    if crop < 16:
        raise FieldError(f"[crop] must be at least 16 px, not {crop}")
    if fake_mpp is not None and not fake_mpp > 0:
        raise FieldError(f"[fake_mpp] must be positive, not {fake_mpp}")
    check_bootstrap(bootstrap, confidence)
    if not fakes:
        raise GigasynthError("no fake to evaluate")
    real_path = Path(real)
    if not real_path.is_file():
        raise GigasynthError(f"real slide not found: {real_path}")
    order = sorted(scales) if scales is not None else None
    reals: dict[float, _RealSide] = {}
    prepared = []
    for fake in fakes:
        fake_input = _open_fake(fake, fake_mpp)
        downsample = _downsample_for(real_path, fake_input, real_downsample)
        if downsample not in reals:
            slide = SlideRegions(real_path, downsample, real_region)
            real_field = _in_memory(slide)
            if order is None:
                order = _fitting_scales(slide, crop)
            reals[downsample] = _RealSide(
                slide,
                real_field,
                {
                    scale: _field_crops(
                        real_field,
                        scale,
                        crop,
                        n,
                        np.random.default_rng([seed, index, 0]),
                        f"the real region {slide.region}",
                    )
                    for index, scale in enumerate(order)
                },
            )
        assert order is not None  # set with the first real side
        fake_field = _in_memory(fake_input.field) if fake_input.field is not None else None
        fake_crops: dict[int, _Crops] = {}
        for index, scale in enumerate(order):
            rng = np.random.default_rng([seed, index, 1])
            what = f"the fake {fake_input.name}"
            if fake_field is not None:
                fake_crops[scale] = _field_crops(fake_field, scale, crop, n, rng, what)
            else:
                assert fake_input.stack is not None
                fake_crops[scale] = _stack_crops(fake_input.stack, scale, crop, n, rng, what)
        prepared.append((fake_input, fake_field, downsample, fake_crops))

    assert order is not None  # set with the first real side
    out = []
    for fake_input, fake_field, downsample, fake_crops in prepared:
        side = reals[downsample]
        level0_mpp = side.slide.level0_mpp
        common_mpp = level0_mpp * downsample if level0_mpp else fake_input.mpp
        results, kept = [], {}
        for scale in order:
            reference, synthetic = side.crops[scale], fake_crops[scale]
            assert reference.field is not None and reference.tiles is not None  # a field
            if scale not in side.features:
                side.features[scale] = inception_features(reference.images, device)
            feats_real = side.features[scale]
            feats_fake = inception_features(synthetic.images, device)
            low, high = kid_bootstrap(
                feats_real,
                feats_fake,
                bootstrap,
                confidence,
                seed,
                reference.blocks,
                synthetic.blocks,
            )
            tissue_real, tissue_fake = reference.tissue(), synthetic.tissue()
            kid_tissue = kid_tissue_low = kid_tissue_high = None
            if min(tissue_real.sum(), tissue_fake.sum()) >= KID_BOOTSTRAP_MIN:
                a, b = feats_real[tissue_real], feats_fake[tissue_fake]
                kid_tissue = kernel_inception_distance(a, b, seed=seed)
                kid_tissue_low, kid_tissue_high = kid_bootstrap(
                    a,
                    b,
                    bootstrap,
                    confidence,
                    seed,
                    None if reference.blocks is None else reference.blocks[tissue_real],
                    None if synthetic.blocks is None else synthetic.blocks[tissue_fake],
                )
            results.append(
                ScaleResult(
                    scale=scale,
                    mpp=common_mpp * scale if common_mpp else None,
                    crop=crop,
                    n=n,
                    kid=kernel_inception_distance(feats_real, feats_fake, seed=seed),
                    kid_low=low,
                    kid_high=high,
                    fid=frechet_distance(feats_real, feats_fake),
                    real_field=reference.field,
                    fake_field=synthetic.field,
                    real_crops=reference.positions,
                    fake_crops=synthetic.positions,
                    real_tiles=reference.tiles,
                    fake_tiles=synthetic.tiles,
                    real_blocks=_count(reference.blocks, n),
                    fake_blocks=_count(synthetic.blocks, n),
                    tissue_real=int(tissue_real.sum()),
                    tissue_fake=int(tissue_fake.sum()),
                    kid_tissue=kid_tissue,
                    kid_tissue_low=kid_tissue_low,
                    kid_tissue_high=kid_tissue_high,
                )
            )
            kept[scale] = (reference.images[:examples], synthetic.images[:examples])
        rng = np.random.default_rng([seed, len(order), 2])
        real_images = _fields(side.pixels, rng)
        if fake_field is not None:
            fake_images = _fields(fake_field, rng)
        else:
            assert fake_input.stack is not None
            stack = fake_input.stack
            fake_images = list(stack[np.sort(rng.permutation(len(stack))[:STACK_FIELDS])])
        out.append(
            SlideEvaluation(
                real=str(real_path),
                real_region=str(side.slide.region),
                real_downsample=downsample,
                fake=fake_input.name,
                mpp=common_mpp,
                fake_mpp=fake_input.mpp,
                seed=seed,
                bootstrap=bootstrap,
                confidence=confidence,
                scales=results,
                bands=_bands(real_images, fake_images),
                band_fields={
                    "real": _field_summary(real_images),
                    "fake": _field_summary(fake_images),
                },
                colour_real=_colour(real_images, common_mpp),
                colour_fake=_colour(fake_images, common_mpp),
                histology_real=histology(real_images, common_mpp) if common_mpp else None,
                histology_fake=histology(fake_images, common_mpp) if common_mpp else None,
                examples=kept,
            )
        )
    return out


# ---------------------------------------------------------------- several fields (seeds)


@dataclass(frozen=True)
class Spread:
    """A figure over several synthetic fields (seeds): mean, standard deviation between
    fields (n - 1 in the denominator; 0 for one field), smallest, largest, how many."""

    mean: float
    std: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 4) -> str:
        return (
            f"{self.mean:.{digits}f} ± {self.std:.{digits}f} "
            f"(range {self.low:.{digits}f}-{self.high:.{digits}f}, {self.n} fields)"
        )


def spread(values: Sequence[float]) -> Spread:
    """The Spread of finite values (at least one)."""
    v = np.array([x for x in values if math.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        raise GigasynthError("no finite value to summarise")
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return Spread(float(v.mean()), std, float(v.min()), float(v.max()), len(v))


def summarize_fields(evaluations: Sequence[SlideEvaluation]) -> dict[str, Any]:
    """Mean and spread between several fields (seeds) evaluated against the same real
    crops: per zoom KID (all crops and tissue only, each field's block-bootstrap interval
    beside it) and FID; per octave the band ratio; the background (glass) fraction and the
    stain amounts of the fakes beside the real ones. JSON-ready."""
    if not evaluations:
        raise GigasynthError("no field to summarise")
    first = evaluations[0]
    scales = [s.scale for s in first.scales]
    if any([s.scale for s in e.scales] != scales for e in evaluations):
        raise GigasynthError("the fields were evaluated at different scales")
    out_scales = []
    for index, scale in enumerate(scales):
        rows = [e.scales[index] for e in evaluations]
        tissue = [r.kid_tissue for r in rows if r.kid_tissue is not None]
        out_scales.append(
            {
                "scale": scale,
                "n": rows[0].n,
                "real_tiles": rows[0].real_tiles,
                "kid": asdict(spread([r.kid for r in rows])),
                "kid_intervals": [[r.kid_low, r.kid_high] for r in rows],
                "kid_tissue": asdict(spread(tissue)) if tissue else None,
                "kid_tissue_intervals": [
                    [r.kid_tissue_low, r.kid_tissue_high] for r in rows if r.kid_tissue is not None
                ],
                "tissue_crops_real": rows[0].tissue_real,
                "tissue_crops_fake": [r.tissue_fake for r in rows],
                "fid": asdict(spread([r.fid for r in rows])),
            }
        )
    bands = min(len(e.bands) for e in evaluations)
    return {
        "fields": len(evaluations),
        "real_region": first.real_region,
        "scales": out_scales,
        "bands": [
            {
                "low_px": first.bands[k].low_px,
                "high_px": first.bands[k].high_px,
                "ratio": asdict(spread([e.bands[k].ratio for e in evaluations])),
            }
            for k in range(bands)
        ],
        "background_fraction": {
            "real": first.colour_real.background_fraction,
            "fake": asdict(spread([e.colour_fake.background_fraction for e in evaluations])),
        },
        "haematoxylin_mean": {
            "real": first.colour_real.haematoxylin_mean,
            "fake": asdict(spread([e.colour_fake.haematoxylin_mean for e in evaluations])),
        },
        "eosin_mean": {
            "real": first.colour_real.eosin_mean,
            "fake": asdict(spread([e.colour_fake.eosin_mean for e in evaluations])),
        },
        "histology": {
            key: {
                "real": getattr(first.histology_real, key, None),
                "fake": asdict(v) if (v := _optional_spread(evaluations, key)) else None,
            }
            for key in HISTOLOGY_FIGURES
        },
        "glass_std": {
            "real": first.colour_real.glass_std,
            "fake": asdict(glass) if (glass := _glass_spread(evaluations)) else None,
        },
    }


HISTOLOGY_FIGURES = ("nuclei_per_mm2", "nucleus_elongation", "coherence", "eosin_dominant")


def _optional_spread(evaluations: Sequence[SlideEvaluation], key: str) -> Spread | None:
    values = [v for e in evaluations if (v := getattr(e.histology_fake, key, None)) is not None]
    return spread(values) if values else None


def _glass_spread(evaluations: Sequence[SlideEvaluation]) -> Spread | None:
    values = [e.colour_fake.glass_std for e in evaluations if e.colour_fake.glass_std is not None]
    return spread(values) if values else None


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """Human-readable lines of `summarize_fields`: every figure with its spread and n."""

    def text(d: dict[str, Any], digits: int = 4) -> str:
        return Spread(**d).text(digits)

    out = [f"{summary['fields']} synthetic fields against {summary['real_region']}:"]
    for s in summary["scales"]:
        tissue = text(s["kid_tissue"]) if s["kid_tissue"] else "too few tissue crops"
        out.append(
            f"scale {s['scale']}x: KID {text(s['kid'])}; tissue only {tissue}; "
            f"FID {text(s['fid'], 1)} (n={s['n']} per side and field, "
            f"{s['real_tiles']} disjoint real crops)"
        )
    if summary["bands"]:
        out.append(
            "band energy, synthetic / real: "
            + "; ".join(
                f"{b['low_px']}-{b['high_px']} px {text(b['ratio'], 2)}" for b in summary["bands"]
            )
        )
    for key, name in (
        ("background_fraction", "background"),
        ("haematoxylin_mean", "haematoxylin OD"),
        ("eosin_mean", "eosin OD"),
    ):
        out.append(f"{name}: real {summary[key]['real']:.3f}, fake {text(summary[key]['fake'], 3)}")
    for key, h in summary["histology"].items():
        if h["real"] is not None and h["fake"] is not None:
            out.append(f"{key}: real {h['real']:.3f}, fake {text(h['fake'], 3)}")
    glass = summary["glass_std"]
    if glass["real"] is not None and glass["fake"] is not None:
        out.append(f"glass noise: real {glass['real']:.2f}, fake {text(glass['fake'], 2)}")
    return out


def check_copies(
    real: str | Path,
    fakes: Sequence[str | Path | np.ndarray],
    *,
    region: str = "train",
    crop: int = 32,
    samples: int = 200,
    seed: int = 0,
    fake_mpp: float | None = None,
    real_downsample: float | None = None,
) -> CopyCheck:
    """The copy check (gigasynth.eval.copies) of synthetic fields against the slide's
    training `region`, read at the fields' µm/px (as `evaluate_slides` matches them); each
    field whole, or FIELD_WINDOWS windows of FIELD_SIDE px of a larger one."""
    if not fakes:
        raise GigasynthError("no fake to check for copies")
    fields: list[np.ndarray] = []
    downsample = None
    rng = np.random.default_rng([seed, 3])
    for fake in fakes:
        fake_input = _open_fake(fake, fake_mpp)
        if fake_input.field is None:
            raise GigasynthError(f"the copy check takes fields, not a stack: {fake_input.name}")
        d = _downsample_for(Path(real), fake_input, real_downsample)
        if downsample is not None and d != downsample:
            raise GigasynthError("the copy check's fields differ in µm per pixel")
        downsample = d
        fields += _fields(fake_input.field, rng)
    assert downsample is not None
    train = SlideRegions(Path(real), downsample, region)
    return copy_check(
        np.asarray(train.read(0, 0, train.height, train.width)), fields, crop, samples, seed
    )
