"""The paper's denoisers: Diff-NCA (tile-local) and FourierDiff-NCA (whole-image)."""

from __future__ import annotations

from torch import nn

from gigasynth.config import ModelConfig
from gigasynth.models.diffnca import DiffNCA
from gigasynth.models.fourier import FourierDiffNCA

__all__ = ["DiffNCA", "FourierDiffNCA", "build_model", "count_parameters", "macs_per_pixel"]


def build_model(config: ModelConfig) -> DiffNCA:
    """The model a config describes, freshly initialised."""
    if config.kind == "fourier-diff-nca":
        return FourierDiffNCA(config)
    return DiffNCA(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs_per_pixel(config: ModelConfig) -> int:
    """Multiply-accumulates per pixel per image-space NCA step.

    Counts the 3x3 perception and both rule layers as the model runs them, with the
    spatially constant conditioning folded into biases. (The reference code evaluates
    the conditioning MLP per pixel too, which adds 5,120 MACs for the paper's sizes.)
    """
    c, h = config.channels, config.hidden
    return 9 * c * c + 2 * c * h + h * c
