"""Exact tiled synthesis of gigapixel slides on Dask (the synth contract)."""

from gigasynth.synth.engine import synthesize
from gigasynth.synth.spec import (
    SynthCancelled,
    SynthDiskFull,
    SynthProgress,
    SynthResult,
    SynthSpec,
)

__all__ = ["SynthCancelled", "SynthDiskFull", "SynthProgress", "SynthResult", "SynthSpec",
           "synthesize"]
