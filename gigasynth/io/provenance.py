"""Read back what a slide file says about itself, whichever of our two formats it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gigasynth.errors import GigasynthError
from gigasynth.io.metadata import SlideMetadata
from gigasynth.io.ometiff import read_tiff_metadata
from gigasynth.io.omezarr import read_zarr_metadata


def read_metadata(path: Path) -> SlideMetadata:
    """Size, µm per pixel, name and provenance of an OME-Zarr folder or an OME-TIFF file."""
    path = Path(path)
    if path.is_dir():
        return read_zarr_metadata(path)
    if path.is_file():
        return read_tiff_metadata(path)
    raise GigasynthError(f"slide not found: {path}")


def read_provenance(path: Path) -> dict[str, Any]:
    """The provenance written into an OME-Zarr or OME-TIFF (incl. synthetic and version)."""
    return read_metadata(path).provenance
