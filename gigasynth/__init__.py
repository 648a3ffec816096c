"""gigasynth: synthetic gigapixel whole-slide images from neural-cellular-automaton diffusion."""

__version__ = "0.1.0"
