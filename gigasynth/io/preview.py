"""A small PNG of a whole slide, from the pyramid level nearest the wanted size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from gigasynth.atomic import atomic_path
from gigasynth.errors import GigasynthError
from gigasynth.io.omezarr import level_shapes, open_level

MAX_PREVIEW_SIDE = 4096


def preview_level(shapes: list[tuple[int, int]], max_side: int) -> int:
    """The smallest level whose longer side still reaches `max_side` (level 0 if none does).

    Its longer side is below 2 * max_side unless level 0 itself is smaller, so reading it
    whole stays cheap.
    """
    fitting = [level for level, shape in enumerate(shapes) if max(shape) >= max_side]
    return fitting[-1] if fitting else 0


def write_preview(zarr_path: Path, png_path: Path, max_side: int = 1024) -> Path:
    """Write an RGB PNG whose longer side is at most `max_side` px (never upscaled)."""
    if isinstance(max_side, bool) or not isinstance(max_side, int) \
            or not 16 <= max_side <= MAX_PREVIEW_SIDE:
        raise GigasynthError(f"preview size must be 16..{MAX_PREVIEW_SIDE} px, got {max_side!r}")
    level = preview_level(level_shapes(zarr_path), max_side)
    rgb = np.moveaxis(open_level(zarr_path, level)[:], 0, -1)
    image = Image.fromarray(np.ascontiguousarray(rgb))
    image.thumbnail((max_side, max_side), Image.Resampling.BOX)
    png_path = Path(png_path)
    with atomic_path(png_path) as tmp:  # gigasynth.images.write_png would import torch
        image.save(tmp, format="PNG")
    return png_path
