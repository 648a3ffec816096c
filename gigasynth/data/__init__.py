"""Training data: random patches from slides (via OpenSlide), image folders and .npz arrays."""

from gigasynth.data.sources import PatchSource, open_source, open_sources

__all__ = ["PatchSource", "open_source", "open_sources"]
