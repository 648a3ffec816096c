"""Pyramid levels of an OME-Zarr: each level the 2x2 mean of the one above, chunk by chunk.

Memory stays bounded by the chunk size: one output chunk (3, c, c) reads one block of at most
(3, 2c, 2c) from the previous level. With a Dask client each output chunk is one task; every
task writes exactly one whole chunk, so no two writers ever touch the same chunk.
"""

from __future__ import annotations

from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zarr

from gigasynth.io.omezarr import (
    IMAGE,
    create_level,
    level_count,
    open_level,
    read_zarr_metadata,
    write_multiscales,
)

if TYPE_CHECKING:
    import distributed

SMALLEST_SIDE = 256


def pyramid_shapes(height: int, width: int) -> list[tuple[int, int]]:
    """(H, W) per level: halve (rounding up) until the longer side is at most 256 px."""
    shapes = [(height, width)]
    while max(shapes[-1]) > SMALLEST_SIDE:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def downsample2x(block: np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 -> (C, ceil(H/2), ceil(W/2)): mean of each 2x2 window, rounded half up.

    At an odd edge the window holds only the pixels that exist: the edge row or column is
    repeated, which gives exactly their mean.
    """
    _, height, width = block.shape
    if height % 2 or width % 2:
        block = np.pad(block, ((0, 0), (0, height % 2), (0, width % 2)), mode="edge")
    sums = block[:, 0::2, 0::2].astype(np.uint16)
    sums += block[:, 1::2, 0::2]
    sums += block[:, 0::2, 1::2]
    sums += block[:, 1::2, 1::2]
    sums += 2
    sums >>= 2
    return sums.astype(np.uint8)


def downsample_chunk(source: zarr.Array, target: zarr.Array, row: int, col: int) -> None:
    """Fill chunk (row, col) of `target` from the matching block of the level above."""
    chunk_h, chunk_w = target.chunks[1:]
    y0, x0 = row * chunk_h, col * chunk_w
    y1, x1 = min(y0 + chunk_h, target.shape[1]), min(x0 + chunk_w, target.shape[2])
    block = np.asarray(
        source[:, 2 * y0 : min(2 * y1, source.shape[1]), 2 * x0 : min(2 * x1, source.shape[2])]
    )
    target[:, y0:y1, x0:x1] = downsample2x(block)


def _downsample_task(path: str, level: int, row: int, col: int) -> None:
    """One Dask task: open both levels by path (cheap, picklable) and fill one chunk."""
    source = zarr.open_array(f"{path}/{IMAGE}/{level - 1}", mode="r", zarr_format=2)
    target = zarr.open_array(f"{path}/{IMAGE}/{level}", mode="r+", zarr_format=2)
    downsample_chunk(source, target, row, col)


def build_pyramid(path: Path, client: distributed.Client | None = None) -> list[tuple[int, int]]:
    """Compute levels 1.. from level 0 and publish them in the multiscales metadata.

    Levels are built one after another (each from the finished previous one); within a
    level, chunks run in this process or, with `client`, as one Dask task each (the workers
    open `path` themselves, so it must be on storage they see). The metadata lists the new
    levels only once they are complete. Returns (H, W) per level.
    """
    path = Path(path)
    meta = read_zarr_metadata(path)
    base = open_level(path, 0)
    shapes = pyramid_shapes(*base.shape[1:])
    chunk = base.chunks[1]
    if level_count(path) > 1:
        write_multiscales(path, meta, shapes[:1])  # unlist the old levels while rebuilding
    image = zarr.open_group(str(path / IMAGE), mode="r+", zarr_format=2)
    for level in range(1, len(shapes)):
        target = create_level(image, level, shapes[level], chunk)
        grid = product(range(target.cdata_shape[1]), range(target.cdata_shape[2]))
        if client is None:
            source = zarr.open_array(str(path / IMAGE / str(level - 1)), mode="r", zarr_format=2)
            for row, col in grid:
                downsample_chunk(source, target, row, col)
        else:
            rows, cols = zip(*grid, strict=True)
            n = len(rows)
            futures = client.map(
                _downsample_task, [str(path)] * n, [level] * n, rows, cols, pure=False
            )
            client.gather(futures)
    write_multiscales(path, meta, shapes)
    return shapes
