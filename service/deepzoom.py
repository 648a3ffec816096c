"""DeepZoom geometry: levels, tile grids and tile bounds for an image of a given size.

Level L of an image W x H is ceil(W / 2^(M - L)) x ceil(H / 2^(M - L)) with
M = ceil(log2(max(W, H))): level M is full size, level 0 is 1 x 1. Tiles are `tile`
px square plus `overlap` px on every side that has a neighbour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TILE_SIZE = 254
OVERLAP = 1


@dataclass(frozen=True)
class DeepZoom:
    """The DeepZoom pyramid of a width x height image."""

    width: int
    height: int
    tile: int = TILE_SIZE
    overlap: int = OVERLAP

    @property
    def max_level(self) -> int:
        return math.ceil(math.log2(max(self.width, self.height, 1)))

    def scale(self, level: int) -> int:
        """Full-size pixels per pixel of `level`."""
        return 1 << (self.max_level - level)

    def level_size(self, level: int) -> tuple[int, int]:
        s = self.scale(level)
        return -(-self.width // s), -(-self.height // s)

    def grid(self, level: int) -> tuple[int, int]:
        """(columns, rows) of tiles at `level`."""
        w, h = self.level_size(level)
        return -(-w // self.tile), -(-h // self.tile)

    def has_tile(self, level: int, col: int, row: int) -> bool:
        if not 0 <= level <= self.max_level:
            return False
        cols, rows = self.grid(level)
        return 0 <= col < cols and 0 <= row < rows

    def tile_bounds(self, level: int, col: int, row: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of a tile in `level` pixels, overlap included."""
        w, h = self.level_size(level)
        x0 = max(0, col * self.tile - self.overlap)
        y0 = max(0, row * self.tile - self.overlap)
        x1 = min(w, (col + 1) * self.tile + self.overlap)
        y1 = min(h, (row + 1) * self.tile + self.overlap)
        return x0, y0, x1, y1

    def dzi_xml(self, fmt: str = "jpeg") -> str:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
            f'Format="{fmt}" Overlap="{self.overlap}" TileSize="{self.tile}">'
            f'<Size Width="{self.width}" Height="{self.height}"/></Image>\n'
        )
