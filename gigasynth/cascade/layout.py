"""The layout a cascade starts from: an image file as it is, or a slide read through
OpenSlide at the resolution the first stage's condition needs (one-line errors)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from gigasynth.data.discover import is_slide
from gigasynth.errors import GigasynthError

# Pixels of a layout (at the layout's resolution), read into memory whole.
MAX_LAYOUT_PIXELS = int(os.environ.get("GIGASYNTH_MAX_LAYOUT_PIXELS", str(1 << 26)))
RESOLUTION_TOLERANCE = 0.01


def _check_pixels(path: Path, width: int, height: int) -> None:
    if width * height > MAX_LAYOUT_PIXELS:
        raise GigasynthError(
            f"layout {path} is too large: {width}x{height} px exceeds "
            f"{MAX_LAYOUT_PIXELS:,} pixels (GIGASYNTH_MAX_LAYOUT_PIXELS)"
        )
    if width < 1 or height < 1:
        raise GigasynthError(f"layout {path} is empty ({width}x{height} px)")


def _read_image(path: Path) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                _check_pixels(path, *im.size)
                return np.asarray(im.convert("RGB"))
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise GigasynthError(
                f"layout {path} is not an image (PNG, JPEG, TIFF) or a slide OpenSlide reads"
            ) from None
        raise GigasynthError(f"layout {path} is too large to decode") from None
    except OSError as exc:
        raise GigasynthError(f"cannot read layout {path}: {exc}") from None


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
    return _read_image(path)
