"""The paper's denoisers: Diff-NCA (tile-local) and FourierDiff-NCA (whole-image), and the
`Denoiser` protocol that they and the UNet baseline satisfy."""

from __future__ import annotations

from torch import nn

from gigasynth.config import ModelConfig
from gigasynth.models.denoiser import Denoiser, DenoiserConfig
from gigasynth.models.diffnca import DiffNCA
from gigasynth.models.fourier import FourierDiffNCA
from gigasynth.models.nca import Rule, conv_bias

__all__ = [
    "Denoiser",
    "DenoiserConfig",
    "DiffNCA",
    "FourierDiffNCA",
    "build_model",
    "count_parameters",
    "macs_per_pixel",
]


def build_model(config: ModelConfig, zero_output: bool = True) -> DiffNCA:
    """The model a config describes, freshly initialised.

    zero_output: every rule's output layer starts at zero, so each NCA update starts
    as the identity and the prediction at zero; training grows the updates from there,
    as the authors' NCA code does. With random output weights the Fourier stage's
    updates, summed over the 256 coefficients it writes back, start the hidden
    channels in the hundreds: a tiny-fourier run's loss began near 2,000 and still
    ranged 2-3 after 300 iterations, against 0.45 from zero (docs/RESULTS.md). False
    keeps PyTorch's random init, for tests and benchmarks that need updates that move
    the state.
    """
    model = FourierDiffNCA(config) if config.kind == "fourier-diff-nca" else DiffNCA(config)
    if zero_output:
        for module in model.modules():
            if isinstance(module, Rule):
                nn.init.zeros_(module.fc2.weight)
                nn.init.zeros_(conv_bias(module.fc2))
    return model


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
