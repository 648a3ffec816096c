"""Synthetic training sets: bulk patch generation with provenance, and reading them back."""

from gigasynth.dataset.patches import Patch, encode_png, iter_patches
from gigasynth.dataset.reader import SyntheticPatches, read_manifest
from gigasynth.dataset.run import DatasetResult, make_dataset, regenerate
from gigasynth.dataset.spec import DatasetSpec

__all__ = [
    "DatasetResult",
    "DatasetSpec",
    "Patch",
    "SyntheticPatches",
    "encode_png",
    "iter_patches",
    "make_dataset",
    "read_manifest",
    "regenerate",
]
