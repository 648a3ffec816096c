"""Pyramidal OME-TIFF from an OME-Zarr, streamed tile by tile.

BigTIFF; level 0 in the first IFD with our OME-XML (UTF-8 bytes in ImageDescription, as
Bio-Formats decodes it), levels 1.. as its SubIFDs (the layout
Bio-Formats, hence QuPath, reads as a pyramid); 512 px tiles, interleaved RGB uint8.
JPEG tiles are YCbCr 4:2:0 (tile sides are multiples of 16); "zlib" (with horizontal
predictor) and "none" are lossless. tifffile pulls tiles from a generator that reads one
512 px block of the Zarr level at a time, so no level is ever held in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from gigasynth.atomic import atomic_path
from gigasynth.errors import GigasynthError
from gigasynth.io.metadata import SlideMetadata
from gigasynth.io.omexml import build_omexml, parse_metadata
from gigasynth.io.omezarr import level_shapes, open_level, read_zarr_metadata

TILE = 512
COMPRESSIONS = ("jpeg", "zlib", "none")
ENCODE_BUFFER_BYTES = 32 * 2**20  # tifffile encodes at most this much of queued tiles at once


def _codec_options(compression: str, quality: int) -> dict[str, Any]:
    if compression not in COMPRESSIONS:
        raise GigasynthError(
            f"unknown TIFF compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}")
    if compression == "jpeg":
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
            raise GigasynthError(f"JPEG quality must be an integer 1..100, got {quality!r}")
        return {"compression": "jpeg", "compressionargs": {"level": quality},
                "subsampling": (2, 2)}
    if compression == "zlib":
        return {"compression": "zlib", "predictor": True}
    return {"compression": None}


def _tiles(level: zarr.Array) -> Iterator[np.ndarray]:
    """Yield (h, w, 3) tiles in row-major order; tifffile pads the edge tiles."""
    _, height, width = level.shape
    for y in range(0, height, TILE):
        for x in range(0, width, TILE):
            yield np.moveaxis(level[:, y:y + TILE, x:x + TILE], 0, -1)


def write_ome_tiff(zarr_path: Path, tiff_path: Path, compression: str = "jpeg",
                   quality: int = 90) -> Path:
    """Write the whole pyramid of `zarr_path` as one OME-TIFF at `tiff_path` (atomically)."""
    codec = _codec_options(compression, quality)
    meta = read_zarr_metadata(zarr_path)
    shapes = level_shapes(zarr_path)
    pixels_per_cm = 1e4 / meta.mpp
    tiff_path = Path(tiff_path)
    if tiff_path.is_dir():
        raise GigasynthError(f"OME-TIFF target is a folder: {tiff_path}")
    with atomic_path(tiff_path) as tmp, tifffile.TiffWriter(tmp, bigtiff=True, ome=False) as tif:
        for level, (height, width) in enumerate(shapes):
            scale = 2**level
            options: dict[str, Any] = {
                "shape": (height, width, 3), "dtype": np.uint8, "tile": (TILE, TILE),
                "photometric": "rgb", "planarconfig": "contig", "metadata": None,
                "resolution": (pixels_per_cm / scale, pixels_per_cm / scale),
                "resolutionunit": "CENTIMETER", "buffersize": ENCODE_BUFFER_BYTES, **codec,
            }
            if level == 0:
                options.update(subifds=len(shapes) - 1,
                               description=build_omexml(meta, "tiff"))
            else:
                options.update(subfiletype=1)
            tif.write(_tiles(open_level(zarr_path, level)), **options)
    return tiff_path


def read_tiff_omexml(tiff_path: Path) -> str:
    """The OME-XML in a TIFF's first ImageDescription."""
    try:
        with tifffile.TiffFile(tiff_path) as tif:
            xml = tif.ome_metadata
    except FileNotFoundError:
        raise GigasynthError(f"OME-TIFF not found: {tiff_path}") from None
    except (tifffile.TiffFileError, OSError) as exc:
        raise GigasynthError(f"cannot read TIFF {tiff_path}: {exc}") from None
    if not xml:
        raise GigasynthError(f"no OME-XML in {tiff_path}")
    return xml


def read_tiff_metadata(tiff_path: Path) -> SlideMetadata:
    """The slide metadata stored in an OME-TIFF we wrote."""
    return parse_metadata(read_tiff_omexml(tiff_path), str(tiff_path))
