"""DeepZoom tiles of a slide gigasynth wrote, for OpenSeadragon and other DeepZoom viewers.

`DeepZoomGenerator(open_slide(path))` works as openslide-python's generator does: level
sizes, DeepZoom tile grids, the DZI descriptor, and tiles addressed by (level, (col, row)).
The HTTP service serves exactly these; a library user gets the same tiles without it.

A *DeepZoom tile* is `dz_tile_size` px square (254) of one DeepZoom level plus
`dz_overlap` px (1) on every side that has a neighbour. It has nothing to do with the
engine's tile (`--tile`), the Zarr chunk or the OME-TIFF tile (512 px).

DeepZoom level L of a W x H slide is ceil(W / 2^(M - L)) x ceil(H / 2^(M - L)) px with
M = ceil(log2(max(W, H))): level M is full size, level 0 is 1 x 1. These are the sizes of
the stored pyramid (each level half the one above, rounded up), so a DeepZoom tile is a
slice of the stored level of the same resolution. DeepZoom levels coarser than every
stored level continue the pyramid: the coarsest stored level's pixels are halved with
`gigasynth.io.pyramid.downsample2x` as often as needed, reading only the tile's region (a
slide without a pyramid thus reads large parts of level 0 for its coarse tiles).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from gigasynth.errors import GigasynthError
from gigasynth.io.pyramid import downsample2x
from gigasynth.io.reader import SlideReader, as_int

DZ_TILE_SIZE = 254
DZ_OVERLAP = 1
JPEG_QUALITY = 90
FORMATS = ("jpeg", "png")
DZI_NAMESPACE = "http://schemas.microsoft.com/deepzoom/2008"


def _setting(name: str, value: Any, least: int, most: int | None = None) -> int:
    """`value` as an int within [least, most], or a one-line error naming `name`."""
    try:
        number = as_int(name, value)
    except GigasynthError:
        number = least - 1
    if number < least or (most is not None and number > most):
        span = f"{least}..{most}" if most is not None else f"of at least {least}"
        raise GigasynthError(f"{name} must be an integer {span}, got {value!r}")
    return number


def _format(value: Any) -> str:
    if value not in FORMATS:
        raise GigasynthError(
            f"DeepZoom tile format must be one of {', '.join(FORMATS)}, got {value!r}"
        )
    return str(value)


class DeepZoomGenerator:
    """The DeepZoom pyramid of a slide: level sizes, DeepZoom tile grids, tiles and the DZI.

    `level_dimensions` are (width, height) per DeepZoom level and `level_tiles` (columns,
    rows) of DeepZoom tiles, level 0 (1 x 1 px) first, as in openslide's generator.
    """

    def __init__(
        self, slide: SlideReader, dz_tile_size: int = DZ_TILE_SIZE, dz_overlap: int = DZ_OVERLAP
    ) -> None:
        self.slide = slide
        self.dz_tile_size = _setting("DeepZoom tile size", dz_tile_size, 1)
        self.dz_overlap = _setting("DeepZoom overlap", dz_overlap, 0)
        self.width, self.height = slide.width, slide.height
        self.level_count = (max(self.width, self.height) - 1).bit_length() + 1
        self.level_dimensions: tuple[tuple[int, int], ...] = tuple(
            (-(-self.width // self._downsample(lvl)), -(-self.height // self._downsample(lvl)))
            for lvl in range(self.level_count)
        )
        self.level_tiles: tuple[tuple[int, int], ...] = tuple(
            (-(-w // self.dz_tile_size), -(-h // self.dz_tile_size))
            for w, h in self.level_dimensions
        )
        self.tile_count = sum(cols * rows for cols, rows in self.level_tiles)
        # stored levels used: the leading ones that are each half the one above, rounded up
        usable = 1
        while usable < len(slide.levels) and slide.levels[usable] == (
            -(-self.height >> usable),
            -(-self.width >> usable),
        ):
            usable += 1
        self._stored_levels = usable

    def _downsample(self, level: int) -> int:
        """Level-0 pixels per pixel of DeepZoom `level`."""
        return 1 << (self.level_count - 1 - level)

    def check_tile(self, level: int, address: tuple[int, int]) -> tuple[int, int, int]:
        """(level, col, row) as ints, or a one-line GigasynthError unless that DeepZoom tile
        exists."""
        level = as_int("DeepZoom level", level)
        try:
            col, row = address
        except (TypeError, ValueError):
            raise GigasynthError(
                f"a DeepZoom tile address is (column, row), got {address!r}"
            ) from None
        col, row = as_int("DeepZoom column", col), as_int("DeepZoom row", row)
        if not 0 <= level < self.level_count:
            raise GigasynthError(
                f"DeepZoom level {level} is outside the pyramid (0..{self.level_count - 1})"
            )
        cols, rows = self.level_tiles[level]
        if not (0 <= col < cols and 0 <= row < rows):
            raise GigasynthError(
                f"DeepZoom tile {col}_{row} is outside level {level} ({cols} columns x {rows} rows)"
            )
        return level, col, row

    def get_tile_bounds(self, level: int, address: tuple[int, int]) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of a DeepZoom tile in pixels of its level, overlap included."""
        level, col, row = self.check_tile(level, address)
        width, height = self.level_dimensions[level]
        size, overlap = self.dz_tile_size, self.dz_overlap
        return (
            max(0, col * size - overlap),
            max(0, row * size - overlap),
            min(width, (col + 1) * size + overlap),
            min(height, (row + 1) * size + overlap),
        )

    def get_tile_dimensions(self, level: int, address: tuple[int, int]) -> tuple[int, int]:
        """(width, height) of a DeepZoom tile, overlap included."""
        x0, y0, x1, y1 = self.get_tile_bounds(level, address)
        return x1 - x0, y1 - y0

    def get_tile(self, level: int, address: tuple[int, int]) -> Image.Image:
        """The RGB image of one DeepZoom tile."""
        x0, y0, x1, y1 = self.get_tile_bounds(level, address)
        halvings = self.level_count - 1 - as_int("DeepZoom level", level)
        stored = min(halvings, self._stored_levels - 1)
        factor = 1 << (halvings - stored)  # 1 unless coarser than every stored level
        stored_h, stored_w = self.slide.levels[stored]
        ys0, ys1 = y0 * factor, min(y1 * factor, stored_h)
        xs0, xs1 = x0 * factor, min(x1 * factor, stored_w)
        pixels = self.slide.read_region(stored, ys0, xs0, ys1 - ys0, xs1 - xs0)
        if factor > 1:
            # a block aligned to `factor` halves exactly as its part of the whole level does
            block = np.moveaxis(pixels, -1, 0)
            for _ in range(halvings - stored):
                block = downsample2x(block)
            pixels = np.ascontiguousarray(np.moveaxis(block, 0, -1))
        return Image.fromarray(pixels, "RGB")

    def get_tile_bytes(
        self,
        level: int,
        address: tuple[int, int],
        format: str = "jpeg",
        quality: int = JPEG_QUALITY,
    ) -> bytes:
        """One DeepZoom tile encoded as `format` ("jpeg" at `quality`, or "png")."""
        options: dict[str, Any] = {}
        if _format(format) == "jpeg":
            options["quality"] = _setting("JPEG quality", quality, 1, 100)
        buffer = io.BytesIO()
        self.get_tile(level, address).save(buffer, format.upper(), **options)
        return buffer.getvalue()

    def get_dzi(self, format: str = "jpeg") -> str:
        """The DZI descriptor: `format` tiles of this size and overlap, the full size."""
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<Image xmlns="{DZI_NAMESPACE}" Format="{_format(format)}" '
            f'Overlap="{self.dz_overlap}" TileSize="{self.dz_tile_size}">'
            f'<Size Width="{self.width}" Height="{self.height}"/></Image>\n'
        )
