"""Read back what a slide file says about itself, whichever of our two formats it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gigasynth.io.metadata import SlideMetadata
from gigasynth.io.reader import open_slide


def read_metadata(path: Path) -> SlideMetadata:
    """Size, µm per pixel, name and provenance of an OME-Zarr folder or an OME-TIFF file."""
    with open_slide(path) as slide:
        return slide.metadata


def read_provenance(path: Path) -> dict[str, Any]:
    """The provenance written into an OME-Zarr or OME-TIFF (incl. synthetic and version)."""
    return read_metadata(path).provenance
