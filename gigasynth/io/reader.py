"""Reading a slide gigasynth wrote, OME-Zarr or OME-TIFF: levels, pixel size, metadata, pixels.

The one reader of both output layouts. `open_slide` picks the format (a folder: OME-Zarr, a
file: OME-TIFF) and returns a `SlideReader`; the OME-TIFF and preview writers, the DeepZoom
generator and the HTTP service read outputs through it.

- OME-Zarr (`gigasynth.io.omezarr` writes it): image `0/`, levels `0/{level}` of
  (3, H_l, W_l) uint8, `OME/METADATA.ome.xml`. The levels are those the NGFF multiscales
  lists (a pyramid still being built lists level 0 only). A store without multiscales
  (written by hand or by another tool, Zarr format 2 or 3) is read as the consecutive
  arrays `0/0`, `0/1`, ... it holds; its `metadata` is then an error and its `mpp` the
  NGFF scale or None.
- OME-TIFF (`gigasynth.io.ometiff` writes it): level 0 in the first page, (H, W, 3) RGB
  uint8, the other levels in its SubIFDs; OME-XML in the first ImageDescription.

Every level is read lazily, one region at a time: memory follows the region, not the level.
"""

from __future__ import annotations

import operator
import threading
from abc import ABC, abstractmethod
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import tifffile
import zarr

from gigasynth.errors import GigasynthError
from gigasynth.io.metadata import SlideMetadata
from gigasynth.io.omexml import parse_metadata
from gigasynth.io.omezarr import IMAGE, listed_levels, read_zarr_metadata


def _is_array(path: Path) -> bool:
    """Zarr array metadata (format 2 or 3) at `path`."""
    return (path / ".zarray").is_file() or (path / "zarr.json").is_file()


def is_ome_zarr(path: Path) -> bool:
    """A folder holding a level-0 array at 0/0 (Zarr format 2 or 3 metadata)."""
    return Path(path).is_dir() and _is_array(Path(path) / IMAGE / "0")


def as_int(name: str, value: Any) -> int:
    """`value` as a plain int (numpy integers too), or a one-line error naming `name`."""
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise GigasynthError(f"{name} must be an integer, got {value!r}") from None


class SlideReader(ABC):
    """An opened slide (see `open_slide`): its levels, and pixels read on demand.

    `levels` holds (H, W) per pyramid level, level 0 (full size) first. Use it as a context
    manager, or call `close`, to release an OME-TIFF's file handle.
    """

    path: Path
    levels: tuple[tuple[int, int], ...]

    @property
    def height(self) -> int:
        """Level-0 height in pixels."""
        return self.levels[0][0]

    @property
    def width(self) -> int:
        """Level-0 width in pixels."""
        return self.levels[0][1]

    @property
    @abstractmethod
    def metadata(self) -> SlideMetadata:
        """Size, µm per pixel, name and provenance from the slide's OME-XML."""

    @cached_property
    def mpp(self) -> float | None:
        """µm per level-0 pixel from gigasynth's OME-XML, else None."""
        try:
            return self.metadata.mpp
        except GigasynthError:
            return None

    def check_level(self, level: int) -> int:
        """`level` as an int, or a one-line GigasynthError if the slide has no such level."""
        level = as_int("level", level)
        if not 0 <= level < len(self.levels):
            raise GigasynthError(
                f"level {level} out of range: {self.path} has levels 0..{len(self.levels) - 1}"
            )
        return level

    def read_region(self, level: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        """(h, w, 3) uint8 pixels of `level` from row `y`, column `x`; wholly inside the level."""
        level = self.check_level(level)
        y, x, h, w = (as_int(n, v) for n, v in (("y", y), ("x", x), ("h", h), ("w", w)))
        height, width = self.levels[level]
        if min(y, x, h, w) < 0 or y + h > height or x + w > width:
            raise GigasynthError(
                f"region of {w}x{h} px at x={x}, y={y} is outside level "
                f"{level} ({width}x{height} px) of {self.path}"
            )
        return self._read(level, y, x, h, w)

    @abstractmethod
    def _read(self, level: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        """The pixels of a region already checked to lie inside `level`."""

    @abstractmethod
    def close(self) -> None:
        """Release what the reader holds open."""

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _check_rgb(shape: tuple[int, ...], dtype: np.dtype, channel_axis: int, where: str) -> None:
    """A one-line error unless `shape` is 3-D with 3 channels on `channel_axis`, uint8."""
    if len(shape) != 3 or shape[channel_axis] != 3 or dtype != np.uint8:
        layout = "(3, H, W)" if channel_axis == 0 else "(H, W, 3)"
        raise GigasynthError(
            f"{where}: expected a {layout} uint8 image, got {tuple(shape)} {dtype}"
        )


class ZarrSlide(SlideReader):
    """An OME-Zarr output; each level's array opened once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            attrs = zarr.open_group(str(self.path / IMAGE), mode="r").attrs.asdict()
        except (OSError, ValueError):  # no group metadata: arrays written without NGFF
            attrs = {}
        names = listed_levels(attrs)
        if names is None:
            names = []
            while _is_array(self.path / IMAGE / str(len(names))):
                names.append(str(len(names)))
        if not names:
            raise GigasynthError(
                f"not an OME-Zarr output (no pyramid level at {IMAGE}/0): {self.path}"
            )
        self._attrs: dict[str, Any] = attrs  # NGFF JSON, read defensively in `mpp`
        self._arrays = [self._open(name) for name in names]
        self.levels = tuple((int(a.shape[1]), int(a.shape[2])) for a in self._arrays)

    def _open(self, name: str) -> zarr.Array:
        try:
            array = zarr.open_array(str(self.path / IMAGE / name), mode="r")
        except FileNotFoundError:
            raise GigasynthError(f"level {name} is listed but missing in {self.path}") from None
        except (OSError, ValueError, KeyError) as exc:
            raise GigasynthError(
                f"level {name} of {self.path} is not a readable Zarr array ({type(exc).__name__})"
            ) from None
        _check_rgb(array.shape, array.dtype, 0, f"level {name} of {self.path}")
        return array

    @cached_property
    def metadata(self) -> SlideMetadata:
        """Size, µm per pixel, name and provenance from `OME/METADATA.ome.xml`."""
        return read_zarr_metadata(self.path)

    @cached_property
    def mpp(self) -> float | None:
        """µm per level-0 pixel: gigasynth's OME-XML, else the NGFF level-0 scale, else None."""
        try:
            return self.metadata.mpp
        except GigasynthError:
            pass
        try:
            transform = self._attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"]
            value = float(transform[0]["scale"][-1])
        except (KeyError, IndexError, TypeError, ValueError):
            return None
        return value if np.isfinite(value) and value > 0 else None

    def close(self) -> None:
        """Nothing to release: Zarr opens a chunk's file only while reading it."""

    def _read(self, level: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        block = np.asarray(self._arrays[level][:, y : y + h, x : x + w])
        return np.ascontiguousarray(np.moveaxis(block, 0, -1))


class TiffSlide(SlideReader):
    """An OME-TIFF output, held open; its levels read TIFF tile by TIFF tile through
    tifffile's Zarr store.

    Reads from several threads are serialised (one file handle).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._tif = tifffile.TiffFile(self.path)
        except (tifffile.TiffFileError, OSError, ValueError) as exc:
            raise GigasynthError(f"cannot read TIFF {self.path}: {exc}") from None
        try:
            series = self._tif.series[0]
            _check_rgb(series.shape, series.dtype, 2, f"{self.path}")
            self._xml = self._tif.ome_metadata
            self._arrays = [
                zarr.open_array(series.aszarr(level=level), mode="r")
                for level in range(len(series.levels))
            ]
        except GigasynthError:
            self._tif.close()
            raise
        except (IndexError, KeyError, ValueError, OSError, tifffile.TiffFileError) as exc:
            self._tif.close()
            raise GigasynthError(
                f"cannot read the image levels of TIFF {self.path}: {type(exc).__name__}"
            ) from None
        self.levels = tuple((int(a.shape[0]), int(a.shape[1])) for a in self._arrays)
        self._lock = threading.Lock()

    @cached_property
    def metadata(self) -> SlideMetadata:
        """Size, µm per pixel, name and provenance from the first page's OME-XML."""
        if not self._xml:
            raise GigasynthError(f"no OME-XML in {self.path}")
        return parse_metadata(self._xml, str(self.path))

    def _read(self, level: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        with self._lock:
            return np.ascontiguousarray(self._arrays[level][y : y + h, x : x + w])

    def close(self) -> None:
        """Close the TIFF file."""
        self._tif.close()


def open_slide(path: Path) -> SlideReader:
    """Open an OME-Zarr folder or an OME-TIFF file for reading (one-line GigasynthError if not)."""
    path = Path(path)
    if path.is_dir():
        return ZarrSlide(path)
    if path.is_file():
        return TiffSlide(path)
    raise GigasynthError(f"slide not found: {path}")


def level_shapes(path: Path) -> list[tuple[int, int]]:
    """(H, W) of every pyramid level, level 0 first."""
    with open_slide(path) as slide:
        return list(slide.levels)
