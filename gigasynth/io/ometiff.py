"""Pyramidal OME-TIFF from an OME-Zarr, streamed TIFF tile by TIFF tile.

BigTIFF; level 0 in the first IFD with our OME-XML (UTF-8 bytes in ImageDescription, as
Bio-Formats decodes it), levels 1.. as its SubIFDs (the layout
Bio-Formats, hence QuPath, reads as a pyramid); TIFF tiles of `TIFF_TILE` (512) px,
interleaved RGB uint8. A *TIFF tile* is the TIFF format's unit of storage and compression;
it is neither the engine tile (`--tile`, the unit of synthesis work), the Zarr chunk nor the
DeepZoom tile. JPEG TIFF tiles are YCbCr 4:2:0 (their sides are multiples of 16); "zlib"
(with horizontal predictor) and "none" are lossless. tifffile pulls TIFF tiles from a
generator that reads one 512 px block of the level at a time (through
`gigasynth.io.reader`), so no level is ever held in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from gigasynth.atomic import atomic_path
from gigasynth.errors import GigasynthError
from gigasynth.io.omexml import build_omexml
from gigasynth.io.reader import SlideReader, open_slide

TIFF_TILE = 512  # side of a TIFF tile, px (the preflight sizes the TIFF with it)
COMPRESSIONS = ("jpeg", "zlib", "none")
ENCODE_BUFFER_BYTES = 32 * 2**20  # tifffile encodes at most this much of queued TIFF tiles at once


def _codec_options(compression: str, quality: int) -> dict[str, Any]:
    if compression not in COMPRESSIONS:
        raise GigasynthError(
            f"unknown TIFF compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}"
        )
    if compression == "jpeg":
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
            raise GigasynthError(f"JPEG quality must be an integer 1..100, got {quality!r}")
        return {"compression": "jpeg", "compressionargs": {"level": quality}, "subsampling": (2, 2)}
    if compression == "zlib":
        return {"compression": "zlib", "predictor": True}
    return {"compression": None}


def _tiff_tiles(slide: SlideReader, level: int) -> Iterator[np.ndarray]:
    """Yield the (h, w, 3) TIFF tiles of one level in row-major order; tifffile pads the
    edge ones."""
    height, width = slide.levels[level]
    for y in range(0, height, TIFF_TILE):
        for x in range(0, width, TIFF_TILE):
            yield slide.read_region(
                level, y, x, min(TIFF_TILE, height - y), min(TIFF_TILE, width - x)
            )


def write_ome_tiff(
    zarr_path: Path, tiff_path: Path, compression: str = "jpeg", quality: int = 90
) -> Path:
    """Write the whole pyramid of `zarr_path` as one OME-TIFF at `tiff_path` (atomically)."""
    codec = _codec_options(compression, quality)
    tiff_path = Path(tiff_path)
    with open_slide(zarr_path) as slide:
        meta, shapes = slide.metadata, slide.levels
        pixels_per_cm = 1e4 / meta.mpp
        if tiff_path.is_dir():
            raise GigasynthError(f"OME-TIFF target is a folder: {tiff_path}")
        with (
            atomic_path(tiff_path) as tmp,
            tifffile.TiffWriter(tmp, bigtiff=True, ome=False) as tif,
        ):
            for level, (height, width) in enumerate(shapes):
                scale = 2**level
                options: dict[str, Any] = {
                    "shape": (height, width, 3),
                    "dtype": np.uint8,
                    "tile": (TIFF_TILE, TIFF_TILE),
                    "photometric": "rgb",
                    "planarconfig": "contig",
                    "metadata": None,
                    "resolution": (pixels_per_cm / scale, pixels_per_cm / scale),
                    "resolutionunit": "CENTIMETER",
                    "buffersize": ENCODE_BUFFER_BYTES,
                    **codec,
                }
                if level == 0:
                    options.update(subifds=len(shapes) - 1, description=build_omexml(meta, "tiff"))
                else:
                    options.update(subfiletype=1)
                tif.write(_tiff_tiles(slide, level), **options)
    return tiff_path
