"""An NCA update's weights for one step, with the conditioning folded into biases.

The fast paths take this, never a model: `NCAUpdate.folded` (gigasynth.models.nca)
builds it from `Perception.folded` and `Rule.folded`, the very expressions the plain
path uses, so every path runs the same function. Nothing here imports from models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gigasynth.geometry import Borders


@dataclass(frozen=True)
class FoldedUpdate:
    """Weights of one update step; biases are per sample (B, out) where conditioned."""

    perception_weight: torch.Tensor  # (C, C, 3, 3)
    perception_bias: torch.Tensor  # (B, C)
    fc1_weight: torch.Tensor  # (hidden, 2C): over (state, perceived)
    fc1_bias: torch.Tensor  # (B, hidden)
    norm_weight: torch.Tensor  # (hidden,)
    norm_bias: torch.Tensor  # (hidden,)
    norm_eps: float
    fc2_weight: torch.Tensor  # (C, hidden)
    fc2_bias: torch.Tensor  # (C,)
    frozen: int
    reflect: bool  # reflect padding at the canvas border, else zeros

    @property
    def channels(self) -> int:
        return self.perception_weight.shape[0]

    @property
    def hidden(self) -> int:
        return self.fc1_weight.shape[0]


def border_pads(borders: Borders) -> tuple[int, int, int, int]:
    """(top, bottom, left, right): one pixel of padding on each canvas-border side."""
    return int(borders.top), int(borders.bottom), int(borders.left), int(borders.right)
