"""The NCA update: perception, rule and stochastic update, each replaceable.

A cell state has C channels: 0-2 the noisy image (never written), 3-5 the read-out
(predicted noise), the rest hidden. One update reads a 3x3 neighbourhood (radius 1),
normalises per pixel over channels and never across pixels (invariant I1), and uses
no canvas coordinates (invariant I2). Reflect padding applies only on the sides of an
array that lie on the canvas border; on the other sides the array is a tile with a
halo, the 3x3 convolution is "valid" and the array shrinks by one pixel per update.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gigasynth.geometry import ALL_BORDERS, Borders, Window
from gigasynth.kernels import FoldedUpdate, fast_kernel
from gigasynth.keyed import Stream, key_words, keyed_uniform


def conv_bias(conv: nn.Conv2d) -> torch.Tensor:
    """The bias of a convolution built with one (`nn.Conv2d.bias` is typed Optional)."""
    assert conv.bias is not None, "convolution built without a bias"
    return conv.bias


class PixelNorm(nn.Module):
    """Layer norm over channels at each pixel, with a per-channel affine."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: (..., channels), the channel axis last (an NHWC view)."""
        return F.layer_norm(h, (h.shape[-1],), self.weight, self.bias, self.eps)


class Perception(nn.Module):
    """One dense 3x3 convolution over (state, conditioning) -> C channels.

    The conditioning channels are constant over the canvas, so their share of the
    convolution is folded into a per-sample bias: exactly the same function, with
    C instead of C + 4 input channels per pixel.
    """

    def __init__(self, channels: int, cond: int, padding_mode: str = "reflect") -> None:
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(channels + cond, channels, 3, padding=0)
        if padding_mode not in ("reflect", "constant"):
            raise ValueError(f"padding_mode must be reflect or constant, not {padding_mode!r}")
        self.padding_mode = padding_mode

    def folded(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(C, C, 3, 3) weight over the state, (B, C) bias with the conditioning folded in."""
        c, weight = self.channels, self.conv.weight
        return weight[:, :c], conv_bias(self.conv) + cond @ weight[:, c:].sum(dim=(2, 3)).T

    def forward(
        self, state: torch.Tensor, cond: torch.Tensor, borders: Borders = ALL_BORDERS
    ) -> torch.Tensor:
        pad = (int(borders.left), int(borders.right), int(borders.top), int(borders.bottom))
        if any(pad):
            state = F.pad(state, pad, mode=self.padding_mode)
        weight, bias = self.folded(cond)
        out = F.conv2d(state, weight)
        return out + bias[:, :, None, None]


class Rule(nn.Module):
    """Per-pixel MLP: 1x1 conv over (state, cond, perception) -> hidden -> norm -> C."""

    def __init__(self, channels: int, cond: int, hidden: int) -> None:
        super().__init__()
        self.channels = channels
        self.cond = cond
        self.fc1 = nn.Conv2d(2 * channels + cond, hidden, 1)
        self.norm = PixelNorm(hidden)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def folded(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """fc1 as a (hidden, 2C) weight over (state, perceived) and a (B, hidden) bias."""
        c, k = self.channels, self.cond
        w = self.fc1.weight[:, :, 0, 0]
        w_main = torch.cat([w[:, :c], w[:, c + k :]], dim=1)
        return w_main, conv_bias(self.fc1) + cond @ w[:, c : c + k].T

    def forward(
        self, state: torch.Tensor, cond: torch.Tensor, perceived: torch.Tensor
    ) -> torch.Tensor:
        # The 1x1 convolutions are products over the channel axis of the NHWC view:
        # plain GEMMs forward and backward, where a convolution backend may copy
        # channels-last activations to NCHW and back (a third of a CPU training step).
        w_main, bias = self.folded(cond)
        x = torch.cat([state, perceived], dim=1).permute(0, 2, 3, 1)
        h = torch.matmul(x, w_main.T) + bias[:, None, None, :]
        h = F.leaky_relu(self.norm(h), 0.01)
        return F.linear(h, self.fc2.weight[:, :, 0, 0], self.fc2.bias).permute(0, 3, 1, 2)


def crop_to(state: torch.Tensor, borders: Borders) -> torch.Tensor:
    """Drop the outer pixel on the non-border sides (where a valid 3x3 conv shrinks)."""
    h, w = state.shape[-2:]
    return state[
        ...,
        (not borders.top) : h - (not borders.bottom),
        (not borders.left) : w - (not borders.right),
    ]


class NCAUpdate(nn.Module):
    """One NCA update: perceive, apply the rule, update the unfrozen channels stochastically.

    The first `frozen_channels` channels (the image, and coordinates where used) are
    inputs only: the update never writes them.
    """

    def __init__(
        self,
        channels: int,
        cond: int,
        hidden: int,
        frozen_channels: int,
        padding_mode: str = "reflect",
    ) -> None:
        super().__init__()
        self.perception = Perception(channels, cond, padding_mode)
        self.rule = Rule(channels, cond, hidden)
        self.frozen = frozen_channels
        # Inference (no grad) takes gigasynth.kernels' fused path where one applies;
        # False forces these plain PyTorch ops (the naive baseline, reference tests).
        self.fast_path = True

    def folded(self, cond: torch.Tensor) -> FoldedUpdate:
        """This update's weights for conditioning `cond` (B, cond channels), the
        conditioning folded into per-sample biases: what the fused kernels take.

        The folds are `Perception.folded` and `Rule.folded`, the very expressions the
        plain path uses, so both paths run the same function.
        """
        perception_weight, perception_bias = self.perception.folded(cond)
        fc1_weight, fc1_bias = self.rule.folded(cond)
        rule = self.rule
        return FoldedUpdate(
            perception_weight=perception_weight,
            perception_bias=perception_bias,
            fc1_weight=fc1_weight,
            fc1_bias=fc1_bias,
            norm_weight=rule.norm.weight,
            norm_bias=rule.norm.bias,
            norm_eps=rule.norm.eps,
            fc2_weight=rule.fc2.weight[:, :, 0, 0],
            fc2_bias=conv_bias(rule.fc2),
            frozen=self.frozen,
            reflect=self.perception.padding_mode == "reflect",
        )

    def forward(
        self,
        state: torch.Tensor,
        cond: torch.Tensor,
        fire_mask: torch.Tensor | None,
        borders: Borders = ALL_BORDERS,
    ) -> torch.Tensor:
        """fire_mask: (B, 1, h, w) of 0/1 on the output grid, or None (every cell fires)."""
        if self.fast_path and not torch.is_grad_enabled():
            kernel = fast_kernel(state)
            if kernel is not None:
                return kernel(self.folded(cond), state, fire_mask, borders)
        perceived = self.perception(state, cond, borders)
        state = crop_to(state, borders)
        dx = self.rule(state, cond, perceived)[:, self.frozen :]
        if fire_mask is not None:
            dx = dx * fire_mask
        return torch.cat([state[:, : self.frozen], state[:, self.frozen :] + dx], dim=1)


def fire_mask(
    seeds: list[int],
    t: list[int],
    s: int,
    probability: float,
    height: int,
    width: int,
    window: Window,
    device: torch.device,
) -> torch.Tensor | None:
    """Keyed per-cell decision to update (1) or keep (0), shape (B, 1, height, width)."""
    if probability >= 1.0:
        return None
    keys = key_words(seeds, Stream.FIRE, t, s)
    u = keyed_uniform(keys, 1, height, width, window, device)
    return (u < probability).to(torch.float32)
