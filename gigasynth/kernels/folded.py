"""An NCA update's weights for one step, with the conditioning folded into biases.

Both fast paths run the same function as `NCAUpdate`'s plain ops; they take the
weights through `Perception.folded` and `Rule.folded`, so the conditioning fold is
the very expression the plain path uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from gigasynth.models.nca import Borders, NCAUpdate


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


def fold(update: NCAUpdate, cond: torch.Tensor) -> FoldedUpdate:
    """The update's weights for conditioning `cond` (B, cond channels)."""
    perception_weight, perception_bias = update.perception.folded(cond)
    fc1_weight, fc1_bias = update.rule.folded(cond)
    rule = update.rule
    return FoldedUpdate(
        perception_weight=perception_weight,
        perception_bias=perception_bias,
        fc1_weight=fc1_weight,
        fc1_bias=fc1_bias,
        norm_weight=rule.norm.weight,
        norm_bias=rule.norm.bias,
        norm_eps=rule.norm.eps,
        fc2_weight=rule.fc2.weight[:, :, 0, 0],
        fc2_bias=rule.fc2.bias,
        frozen=update.frozen,
        reflect=update.perception.padding_mode == "reflect",
    )


def border_pads(borders: Borders) -> tuple[int, int, int, int]:
    """(top, bottom, left, right): one pixel of padding on each canvas-border side."""
    return int(borders.top), int(borders.bottom), int(borders.left), int(borders.right)
