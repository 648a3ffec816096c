"""Slide outputs that QuPath opens: pyramidal OME-Zarr (NGFF 0.4) and OME-TIFF; reading them.

Writing: `create_ome_zarr` -> the engine fills level 0 chunk by chunk -> `build_pyramid`
-> `write_ome_tiff` / `write_preview`. Reading either format: `open_slide` (levels, µm per
pixel, metadata, regions), `DeepZoomGenerator` (DeepZoom tiles and the DZI, as a viewer
wants them), `read_metadata` / `read_provenance`. A tissue mask rides along in the OME-Zarr
as an NGFF label image: `write_label` / `read_label`.
"""

from gigasynth.io.deepzoom import DeepZoomGenerator
from gigasynth.io.labels import read_label, write_label
from gigasynth.io.metadata import SlideMetadata
from gigasynth.io.ometiff import write_ome_tiff
from gigasynth.io.omezarr import create_ome_zarr, open_level
from gigasynth.io.preview import write_preview
from gigasynth.io.provenance import read_metadata, read_provenance
from gigasynth.io.pyramid import build_pyramid
from gigasynth.io.reader import SlideReader, level_shapes, open_slide

__all__ = [
    "DeepZoomGenerator",
    "SlideMetadata",
    "SlideReader",
    "build_pyramid",
    "create_ome_zarr",
    "level_shapes",
    "open_level",
    "open_slide",
    "read_label",
    "read_metadata",
    "read_provenance",
    "write_label",
    "write_ome_tiff",
    "write_preview",
]
