"""Training data: random patches from slides (via OpenSlide), image folders and .npz arrays."""

from gigasynth.data.discover import expand_data, open_sources
from gigasynth.data.loader import PatchBatches, load_batches, source_weights
from gigasynth.data.sources import PatchSource, open_source

__all__ = [
    "PatchBatches",
    "PatchSource",
    "expand_data",
    "load_batches",
    "open_source",
    "open_sources",
    "source_weights",
]
