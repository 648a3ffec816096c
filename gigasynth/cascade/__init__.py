"""Cascades of conditioned Diff-NCA stages: a definition (`cascade.json`,
gigasynth.cascade.definition) and, in gigasynth.cascade.synth, a slide from a layout
through every stage, each a tiled `synthesize` call.

This package's top level holds the definition only (it reads checkpoints and nothing
above them); import gigasynth.cascade.synth for synthesis.
"""

from gigasynth.cascade.definition import (
    CASCADE_FILE,
    Cascade,
    Stage,
    cascade_file,
    is_cascade,
    load_cascade,
)

__all__ = ["CASCADE_FILE", "Cascade", "Stage", "cascade_file", "is_cascade", "load_cascade"]
