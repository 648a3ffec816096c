"""Engine tiles of PX x PX over a W x H canvas and the halo-extended window each one reads.

An *engine tile* (here simply a tile; `SynthSpec.tile`, `--tile`) is a rectangle of the
canvas that one task writes (one state chunk, so one writer per chunk): the unit of
synthesis work. It is not the Zarr chunk of the finished slide, the TIFF tile nor the
DeepZoom tile (gigasynth.io). To compute n NCA steps on it, a task reads the tile plus a halo of
n pixels, clipped to the canvas. The sides of that read window that reach the canvas
edge are canvas-border sides (reflect padding there, invariant I1); on the others the
window is n pixels wider than the tile and every NCA step eats one of them, so after
n steps exactly the tile (or, next to a clipped side, a bit more) remains.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gigasynth.errors import GigasynthError
from gigasynth.geometry import Borders, Window


@dataclass(frozen=True)
class ReadWindow:
    """A region of the canvas that a task reads, and which of its sides are canvas border."""

    y0: int
    x0: int
    height: int
    width: int
    borders: Borders

    @property
    def window(self) -> Window:
        return Window(self.y0, self.x0)

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y0 + self.height), slice(self.x0, self.x0 + self.width)

    def output_origin(self, steps: int) -> tuple[int, int]:
        """Canvas position of the first pixel left after `steps` shrinking NCA steps."""
        return (
            self.y0 + (0 if self.borders.top else steps),
            self.x0 + (0 if self.borders.left else steps),
        )

    def inner(self, steps: int) -> ReadWindow:
        """The region left after `steps` shrinking NCA steps: `steps` pixels less on every
        side that is not canvas border (those sides stay border)."""
        b = self.borders
        top, left = (0 if b.top else steps), (0 if b.left else steps)
        bottom, right = (0 if b.bottom else steps), (0 if b.right else steps)
        return ReadWindow(
            self.y0 + top, self.x0 + left, self.height - top - bottom, self.width - left - right, b
        )


@dataclass(frozen=True)
class Tile:
    """One tile: the canvas rectangle a task owns and writes."""

    index: int
    y0: int
    x0: int
    height: int
    width: int
    canvas_height: int
    canvas_width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y0 + self.height), slice(self.x0, self.x0 + self.width)

    @property
    def pixels(self) -> int:
        return self.height * self.width

    def read_window(self, halo: int) -> ReadWindow:
        """The tile plus `halo` pixels on every side, clipped to the canvas."""
        y0, x0 = max(self.y0 - halo, 0), max(self.x0 - halo, 0)
        y1 = min(self.y0 + self.height + halo, self.canvas_height)
        x1 = min(self.x0 + self.width + halo, self.canvas_width)
        borders = Borders(
            top=y0 == 0,
            bottom=y1 == self.canvas_height,
            left=x0 == 0,
            right=x1 == self.canvas_width,
        )
        return ReadWindow(y0, x0, y1 - y0, x1 - x0, borders)

    def crop(self, region: ReadWindow, steps: int) -> tuple[slice, slice]:
        """Where this tile lies in the output of `steps` NCA steps run on `region`."""
        oy, ox = region.output_origin(steps)
        dy, dx = self.y0 - oy, self.x0 - ox
        if dy < 0 or dx < 0:
            raise ValueError(f"{steps} steps on {region} do not leave tile {self.index} whole")
        return slice(dy, dy + self.height), slice(dx, dx + self.width)


@dataclass(frozen=True)
class TilePlan:
    """The tiles of a canvas, row-major, described by arithmetic; `tile == 0` means one
    tile, the whole canvas.

    A plan holds four numbers, never one object per tile: a 262144 px square slide in
    24 px tiles has 119 million of them. Tiles are made on demand (`plan[i]`, iteration),
    so planning, `len(plan)` and the service's admission cost the same at any size.
    """

    width: int
    height: int
    tile: int
    halo: int

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of tiles."""
        if self.tile == 0:
            return 1, 1
        return -(-self.height // self.tile), -(-self.width // self.tile)

    def __len__(self) -> int:
        rows, cols = self.grid
        return rows * cols

    def __getitem__(self, index: int) -> Tile:
        """Tile `index` (row-major; negative counts from the end), computed from the grid."""
        count = len(self)
        if index < 0:
            index += count
        if not 0 <= index < count:
            raise IndexError(f"tile {index} outside a plan of {count} tiles")
        if self.tile == 0:
            return Tile(0, 0, 0, self.height, self.width, self.height, self.width)
        row, col = divmod(index, self.grid[1])
        y0, x0 = row * self.tile, col * self.tile
        return Tile(
            index,
            y0,
            x0,
            min(self.tile, self.height - y0),
            min(self.tile, self.width - x0),
            self.height,
            self.width,
        )

    def __iter__(self) -> Iterator[Tile]:
        """The tiles one by one, row-major (a generator: nothing is kept)."""
        return (self[i] for i in range(len(self)))

    def regions(self, side: int) -> Iterator[Tile]:
        """Rectangles of whole tiles up to `side` px a side (at least one tile), row-major:
        what one task computes as one window on a device that wants large ones. Each
        covers whole state chunks, so each chunk still has one writer; `index` counts
        the regions."""
        if self.tile == 0:
            yield self[0]
            return
        step = max(1, side // self.tile) * self.tile
        index = 0
        for y0 in range(0, self.height, step):
            for x0 in range(0, self.width, step):
                h, w = min(step, self.height - y0), min(step, self.width - x0)
                yield Tile(index, y0, x0, h, w, self.height, self.width)
                index += 1

    def tiles_in(self, region: Tile) -> int:
        """How many tiles of the plan a region of whole tiles covers."""
        if self.tile == 0:
            return 1
        return -(-region.height // self.tile) * -(-region.width // self.tile)

    @property
    def chunk(self) -> tuple[int, int]:
        """(rows, columns) of a state chunk: one chunk per tile."""
        if self.tile == 0:
            return self.height, self.width
        return min(self.tile, self.height), min(self.tile, self.width)

    @property
    def read_pixels(self) -> int:
        """Pixels all tasks of one exchange read, halos included (redundant work, I4).

        A read window's height depends only on its tile's row and its width only on
        the column, so the sum over tiles is the product of two sums along the axes.
        """
        step = self.tile or max(self.height, self.width)

        def extents(length: int) -> int:
            return sum(
                min(start + step + self.halo, length) - max(start - self.halo, 0)
                for start in range(0, length, step)
            )

        return extents(self.height) * extents(self.width)


def plan_tiles(width: int, height: int, tile: int, halo: int) -> TilePlan:
    """Cover width x height with tiles of `tile` px (the last row and column smaller).

    A tile must be at least twice the halo, so that a halo never reaches past the
    neighbouring tile's far side (halo exchange with direct neighbours only).
    """
    if width < 1 or height < 1:
        raise GigasynthError(f"canvas {width}x{height} must be at least 1x1")
    if halo < 0:
        raise GigasynthError(f"halo must be non-negative, not {halo}")
    if tile < 0:
        raise GigasynthError(f"tile must be 0 (whole image) or positive, not {tile}")
    if tile and tile < 2 * halo:
        raise GigasynthError(
            f"tile {tile} px is smaller than twice the halo (2 x {halo} px); "
            f"use tile {2 * halo} or more"
        )
    return TilePlan(width, height, tile, halo)
