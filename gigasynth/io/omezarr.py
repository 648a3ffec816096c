"""The OME-Zarr layout QuPath reads: bioformats2raw layout, NGFF 0.4, Zarr format 2.

    SLIDE.ome.zarr/
      .zattrs                 {"bioformats2raw.layout": 3}
      OME/.zattrs             {"series": ["0"]}
      OME/METADATA.ome.xml    pixel size, objective, channels Red/Green/Blue, provenance (UTF-8)
      0/.zattrs               NGFF multiscales (axes c, y, x in micrometer) + omero channels
      0/0, 0/1, ...           pyramid levels, (3, H_l, W_l) uint8, chunks (3, chunk, chunk)

A *Zarr chunk* is the unit of storage of one level (`SLIDE_CHUNK`, 512 px, for the
slides the engine writes). It is not the engine tile (`--tile`, the unit of synthesis
work, whose state buffers in the work folder have one chunk per engine tile), the TIFF
tile nor the DeepZoom tile. Chunks are zlib-compressed (level 1: synthesised tissue
texture barely compresses losslessly, so a higher level costs time for almost nothing):
every Zarr reader (Bio-Formats' JZarr, zarr-python, large-image) decodes zlib without
native plugins, unlike Blosc.

This module writes the layout; `gigasynth.io.reader` reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numcodecs
import zarr

from gigasynth.atomic import atomic_write_bytes
from gigasynth.errors import GigasynthError
from gigasynth.io.metadata import SlideMetadata
from gigasynth.io.omexml import CHANNELS, build_omexml, parse_metadata

if TYPE_CHECKING:
    from zarr.core.common import JSON

IMAGE = "0"
OMEXML_PATH = Path("OME") / "METADATA.ome.xml"
COMPRESSOR = numcodecs.Zlib(level=1)
CHUNK_KEYS: dict[str, JSON] = {"name": "v2", "separator": "/"}
SLIDE_CHUNK = 512  # side of a slide's Zarr chunks, px, at every level (the preflight's too)
# The NGFF axes of every multiscale image written here (the slide and its label images).
AXES: tuple[dict[str, str], ...] = (
    {"name": "c", "type": "channel"},
    {"name": "y", "type": "space", "unit": "micrometer"},
    {"name": "x", "type": "space", "unit": "micrometer"},
)


def create_ome_zarr(path: Path, meta: SlideMetadata, chunk: int = SLIDE_CHUNK) -> zarr.Array:
    """Create an empty OME-Zarr for `meta` and return its writable level-0 array.

    `chunk` is the side of the Zarr chunks in px. The caller fills level 0, one writer
    per chunk (docs/architecture.md), then calls
    `build_pyramid`. Until then the file is already valid, with a single level.
    """
    path = Path(path)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 16:
        raise GigasynthError(f"chunk must be an integer of at least 16 px, got {chunk!r}")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise GigasynthError(f"output already exists: {path}")
    root = zarr.open_group(
        str(path), mode="w", zarr_format=2, attributes={"bioformats2raw.layout": 3}
    )
    root.create_group("OME", attributes={"series": [IMAGE]})
    atomic_write_bytes(path / OMEXML_PATH, build_omexml(meta, "zarr"))
    image = root.create_group(IMAGE)
    level0 = create_level(image, 0, (meta.height, meta.width), chunk)
    write_multiscales(path, meta, [(meta.height, meta.width)])
    return level0


def create_level(image: zarr.Group, level: int, shape: tuple[int, int], chunk: int) -> zarr.Array:
    """Create (or replace) the empty array of one pyramid level."""
    return image.create_array(
        str(level),
        shape=(3, *shape),
        chunks=(3, chunk, chunk),
        dtype="uint8",
        compressors=COMPRESSOR,
        fill_value=0,
        chunk_key_encoding=CHUNK_KEYS,
        overwrite=True,
    )


def write_multiscales(path: Path, meta: SlideMetadata, shapes: list[tuple[int, int]]) -> None:
    """Write the NGFF 0.4 multiscales (µm scale per level) and omero channel metadata."""
    datasets = [
        {
            "path": str(level),
            "coordinateTransformations": [
                {"type": "scale", "scale": [1.0, meta.mpp * 2**level, meta.mpp * 2**level]},
            ],
        }
        for level in range(len(shapes))
    ]
    multiscales: dict[str, Any] = {
        "version": "0.4",
        "name": meta.name,
        "axes": [dict(axis) for axis in AXES],
        "datasets": datasets,
        "type": "mean",
        "metadata": {
            "description": "each level is the 2x2 mean of the level above, rounded "
            "half up; at odd edges the mean of the pixels that exist"
        },
    }
    omero: dict[str, Any] = {
        "name": meta.name,
        "version": "0.4",
        "rdefs": {"model": "color", "defaultZ": 0, "defaultT": 0},
        "channels": [
            {
                "label": name,
                "color": f"{rgba >> 8:06X}",
                "active": True,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": False,
                "window": {"start": 0, "end": 255, "min": 0, "max": 255},
            }
            for name, rgba in CHANNELS
        ],
    }
    image = zarr.open_group(str(Path(path) / IMAGE), mode="r+", zarr_format=2)
    image.attrs.put({"multiscales": [multiscales], "omero": omero})


def _require_ome_zarr(path: Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise GigasynthError(f"OME-Zarr not found: {path}")
    if not (path / OMEXML_PATH).is_file() or not (path / IMAGE / ".zattrs").is_file():
        raise GigasynthError(f"not a gigasynth OME-Zarr (no {OMEXML_PATH} or image 0): {path}")
    return path


def read_zarr_metadata(path: Path) -> SlideMetadata:
    """The slide metadata stored in the OME-Zarr's METADATA.ome.xml."""
    path = _require_ome_zarr(path)
    xml = (path / OMEXML_PATH).read_text(encoding="utf-8")
    return parse_metadata(xml, str(path))


def listed_levels(attrs: Mapping[str, Any]) -> list[str] | None:
    """Paths of the levels an image's NGFF multiscales lists, level 0 first; None if it has none.

    A pyramid being built lists level 0 only, so readers never see a half-written level.
    """
    try:
        return [str(dataset["path"]) for dataset in attrs["multiscales"][0]["datasets"]]
    except (KeyError, IndexError, TypeError):
        return None


def level_count(path: Path) -> int:
    """Number of pyramid levels the multiscales metadata lists."""
    path = _require_ome_zarr(path)
    attrs = zarr.open_group(str(path / IMAGE), mode="r", zarr_format=2).attrs.asdict()
    listed = listed_levels(attrs)
    if listed is None:
        raise GigasynthError(f"no NGFF multiscales metadata in {path / IMAGE}")
    return len(listed)


def open_level(path: Path, level: int, mode: Literal["r", "r+"] = "r") -> zarr.Array:
    """Open one pyramid level as a (3, H, W) uint8 array; `mode="r+"` to write into it.

    The writers' handle on one array; to read a slide, use `gigasynth.io.reader.open_slide`.
    """
    path = _require_ome_zarr(path)
    count = level_count(path)
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < count:
        raise GigasynthError(f"level {level!r} out of range: {path} has levels 0..{count - 1}")
    if mode not in ("r", "r+"):
        raise GigasynthError(f"mode must be 'r' or 'r+', got {mode!r}")
    try:
        return zarr.open_array(str(path / IMAGE / str(level)), mode=mode, zarr_format=2)
    except FileNotFoundError:
        raise GigasynthError(f"level {level} is listed but missing in {path}") from None
