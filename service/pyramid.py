"""Read access to the pyramid levels of a finished OME-Zarr: `OUT/0/{level}`, (3, H, W) uint8."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import zarr
from PIL import Image

from gigasynth.errors import GigasynthError


class Pyramid:
    """The stored resolution levels of one slide, level 0 at full size, each next 2x smaller."""

    def __init__(self, path: Path) -> None:
        try:
            image = zarr.open_group(str(path / "0"), mode="r")
            names = sorted((k for k in image.array_keys() if re.fullmatch(r"\d+", k)), key=int)
            self.levels = [image[name] for name in names]
        except (FileNotFoundError, KeyError, ValueError) as exc:
            raise GigasynthError(f"no readable pyramid at {path.name}: {exc}") from None
        if not self.levels or self.levels[0].ndim != 3 or self.levels[0].shape[0] != 3:
            raise GigasynthError(f"{path.name} has no (3, H, W) pyramid level 0")
        _, self.height, self.width = self.levels[0].shape

    def region(self, downsample: int, x0: int, y0: int, x1: int, y1: int) -> Image.Image:
        """The RGB image of [x0, x1) x [y0, y1) in coordinates `downsample`x smaller than level 0.

        Reads the nearest stored level at or above that resolution and shrinks it when the
        request is coarser than every stored level (or the level's rounding differs).
        """
        level = min(len(self.levels) - 1, max(0, downsample.bit_length() - 1))
        factor = downsample >> level
        array = self.levels[level]
        _, h_l, w_l = array.shape
        ys0, ys1 = min(y0 * factor, h_l), min(y1 * factor, h_l)
        xs0, xs1 = min(x0 * factor, w_l), min(x1 * factor, w_l)
        pixels = np.ascontiguousarray(np.moveaxis(array[:, ys0:ys1, xs0:xs1], 0, -1))
        if pixels.size == 0:
            return Image.new("RGB", (x1 - x0, y1 - y0), "white")
        image = Image.fromarray(pixels, "RGB")
        if image.size != (x1 - x0, y1 - y0):
            image = image.resize((x1 - x0, y1 - y0), Image.Resampling.BOX)
        return image
