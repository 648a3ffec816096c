"""Slide outputs that QuPath opens: pyramidal OME-Zarr (NGFF 0.4) and OME-TIFF.

Flow: `create_ome_zarr` -> the engine fills level 0 chunk by chunk -> `build_pyramid`
-> `write_ome_tiff` / `write_preview`. Readers use `open_level`, `level_shapes` and
`read_provenance`.
"""

from gigasynth.io.metadata import SlideMetadata
from gigasynth.io.ometiff import write_ome_tiff
from gigasynth.io.omezarr import create_ome_zarr, level_shapes, open_level
from gigasynth.io.preview import write_preview
from gigasynth.io.provenance import read_metadata, read_provenance
from gigasynth.io.pyramid import build_pyramid

__all__ = [
    "SlideMetadata",
    "build_pyramid",
    "create_ome_zarr",
    "level_shapes",
    "open_level",
    "read_metadata",
    "read_provenance",
    "write_ome_tiff",
    "write_preview",
]
