"""The layout a cascade starts from: a tissue mask or an RGB image, from an image file
as it is (decoded by gigasynth.decoding's rules: orientation, 16-bit, alpha, frames), or
from a slide read through OpenSlide at the resolution the stage it enters needs
(one-line errors)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from gigasynth.cascade.definition import Cascade, LayoutKind
from gigasynth.data.discover import is_slide
from gigasynth.data.tissue import tissue_mask
from gigasynth.decoding import is_grey, read_image
from gigasynth.errors import GigasynthError
from gigasynth.settings import LIMITS

# Pixels of a layout (at the layout's resolution), read into memory whole.
MAX_LAYOUT_PIXELS = LIMITS.max_layout_pixels
RESOLUTION_TOLERANCE = 0.01


def _check_pixels(path: Path, width: int, height: int) -> None:
    if width * height > MAX_LAYOUT_PIXELS:
        raise GigasynthError(
            f"layout {path} is too large: {width}x{height} px exceeds "
            f"{MAX_LAYOUT_PIXELS:,} pixels (GIGASYNTH_MAX_LAYOUT_PIXELS)"
        )
    if width < 1 or height < 1:
        raise GigasynthError(f"layout {path} is empty ({width}x{height} px)")


def _slide_mpp(slide: object) -> float | None:
    try:
        value = float(slide.properties.get("openslide.mpp-x") or "nan")  # type: ignore[attr-defined]
    except ValueError:
        return None
    return value if np.isfinite(value) and value > 0 else None


def _read_slide(path: Path, mpp: float) -> np.ndarray:
    import openslide

    try:
        slide = openslide.OpenSlide(str(path))
    except (openslide.OpenSlideError, OSError) as exc:
        raise GigasynthError(f"cannot read layout slide {path}: {exc}") from None
    with slide:
        level0 = _slide_mpp(slide)
        if level0 is None:
            raise GigasynthError(
                f"layout slide {path} states no pixel size "
                "(openslide.mpp-x): give a layout image at "
                f"{mpp:g} µm/px instead"
            )
        down = mpp / level0
        if down < 1 - RESOLUTION_TOLERANCE:
            raise GigasynthError(
                f"layout slide {path} is {level0:g} µm/px, coarser than "
                f"the {mpp:g} µm/px the cascade's first stage needs"
            )
        width, height = slide.dimensions
        size = (max(1, round(width / down)), max(1, round(height / down)))
        _check_pixels(path, *size)
        level = slide.get_best_level_for_downsample(down)
        lw, lh = slide.level_dimensions[level]
        region = slide.read_region((0, 0), level, (lw, lh))
    # Transparent (unscanned) pixels are white, as in the slide viewers.
    white = Image.new("RGBA", region.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, region).convert("RGB")
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.BOX)
    return np.asarray(rgb)


def is_mask_image(rgb: np.ndarray) -> bool:
    """Whether a layout image is a tissue mask: grey (R = G = B at every pixel)."""
    return is_grey(rgb)


def mask_of(rgb: np.ndarray) -> np.ndarray:
    """A grey mask image as a boolean tissue mask: light pixels (>= 128) are tissue."""
    return np.asarray(rgb[..., 0] >= 128)


@dataclass(frozen=True)
class Layout:
    """What a cascade starts from: a tissue mask (bool (H, W)) or an RGB image ((H, W, 3)
    uint8), at the µm per pixel of the stage it enters."""

    kind: LayoutKind
    pixels: np.ndarray
    mpp: float

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in px."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    @property
    def tissue(self) -> np.ndarray:
        """The layout's tissue mask (bool): the mask itself, or the image's tissue."""
        return self.pixels if self.kind == "mask" else tissue_mask(self.pixels)

    def condition_rgb(self) -> np.ndarray:
        """The entry stage's condition as an RGB image (a mask: white tissue on black)."""
        if self.kind == "image":
            return self.pixels
        grey = np.where(self.pixels, 255, 0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)


LAYOUT_KINDS = ("auto", "mask", "image")


def load_layout(path: str | Path, cascade: Cascade, kind: str = "auto") -> Layout:
    """The layout `path` gives `cascade`: an image file (grey: a tissue mask, light =
    tissue; colour: an RGB image), or a slide (its low-resolution image; with kind
    "mask", its tissue mask). `kind` forces how it is taken ("mask" turns an RGB image or
    slide into its tissue mask). It is read at the resolution of the stage it enters
    (an image file is taken to be at it). One-line GigasynthErrors."""
    if kind not in LAYOUT_KINDS:
        raise GigasynthError(f"unknown layout kind {kind!r} (auto, mask or image)")
    path = Path(path)
    if is_slide(path) and path.is_file():
        taken: LayoutKind = "mask" if kind == "mask" else "image"
        mpp = cascade.entry_mpp(taken)
        rgb = read_layout(path, mpp)
        return Layout(taken, tissue_mask(rgb) if taken == "mask" else rgb, mpp)
    return layout_of(read_layout(path, cascade.layout_mpp), cascade, kind)


def layout_of(rgb: np.ndarray, cascade: Cascade, kind: str = "auto") -> Layout:
    """The layout a decoded layout image (H, W, 3) uint8 gives `cascade`, taken as `kind`
    (see load_layout); one-line GigasynthErrors."""
    if kind not in LAYOUT_KINDS:
        raise GigasynthError(f"unknown layout kind {kind!r} (auto, mask or image)")
    grey = is_mask_image(rgb)
    taken: LayoutKind = ("mask" if grey else "image") if kind == "auto" else kind  # type: ignore[assignment]
    mpp = cascade.entry_mpp(taken)
    if taken == "image":
        return Layout("image", rgb, mpp)
    return Layout("mask", mask_of(rgb) if grey else tissue_mask(rgb), mpp)


def read_layout(path: str | Path, mpp: float) -> np.ndarray:
    """The layout as (H, W, 3) uint8: an image file as it is (taken to be at `mpp` µm/px),
    a slide read at `mpp` µm/px. One-line GigasynthError for a missing, empty, unreadable
    or too large layout."""
    path = Path(path)
    if not path.exists():
        raise GigasynthError(f"layout not found: {path}")
    if not path.is_file():
        raise GigasynthError(f"layout {path} is not a file (an image or a slide)")
    if path.stat().st_size == 0:
        raise GigasynthError(f"layout {path} is empty (0 bytes)")
    if is_slide(path):
        return _read_slide(path, mpp)
    return read_image(path, f"layout {path}", MAX_LAYOUT_PIXELS)
