"""A small PNG of a whole slide, from the pyramid level nearest the wanted size.

The PNG says what it is: its pixel size as a pHYs chunk (pixels per metre, so image
viewers and Fiji show the scale) and two text chunks, "Comment" (the sentence that it is
synthetic) and "gigasynth" (the provenance JSON, with ``"synthetic": true``).
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from gigasynth.atomic import atomic_path
from gigasynth.errors import GigasynthError
from gigasynth.io.omexml import DESCRIPTION
from gigasynth.io.reader import open_slide

METRES_PER_INCH = 0.0254  # Pillow takes the pHYs density in dots per inch

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
    if (
        isinstance(max_side, bool)
        or not isinstance(max_side, int)
        or not 16 <= max_side <= MAX_PREVIEW_SIDE
    ):
        raise GigasynthError(f"preview size must be 16..{MAX_PREVIEW_SIDE} px, got {max_side!r}")
    with open_slide(zarr_path) as slide:
        meta = slide.metadata
        level = preview_level(list(slide.levels), max_side)
        image = Image.fromarray(slide.read_region(level, 0, 0, *slide.levels[level]))
    image.thumbnail((max_side, max_side), Image.Resampling.BOX)
    # µm per preview pixel along each axis, from the level-0 size it was shrunk from
    mpp_xy = (meta.mpp * meta.width / image.width, meta.mpp * meta.height / image.height)
    text = PngInfo()
    text.add_text("Comment", DESCRIPTION)
    text.add_text("gigasynth", json.dumps(meta.stamped_provenance(), sort_keys=True))
    png_path = Path(png_path)
    with atomic_path(png_path) as tmp:  # gigasynth.images.write_png would import torch
        image.save(
            tmp,
            format="PNG",
            pnginfo=text,
            dpi=tuple(1e6 / mpp * METRES_PER_INCH for mpp in mpp_xy),
        )
    return png_path
