"""Diff-NCA: a diffusion denoiser made of S NCA updates in image space."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from gigasynth.config import ModelConfig
from gigasynth.errors import GigasynthError
from gigasynth.geometry import ALL_BORDERS, Borders, Window
from gigasynth.models.conditioning import Conditioning
from gigasynth.models.nca import NCAUpdate, fire_mask


def canvas_coordinates(batch: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """x and y maps in [-1, 1] that stretch with the canvas (whole-image models only)."""
    ys = torch.linspace(-1.0, 1.0, height, dtype=like.dtype, device=like.device)
    xs = torch.linspace(-1.0, 1.0, width, dtype=like.dtype, device=like.device)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=0)
    return grid.unsqueeze(0).expand(batch, -1, -1, -1)


class ImageNCA(nn.Module):
    """S stochastic NCA updates over the cell state, conditioned on (t / T, s / S)."""

    def __init__(self, config: ModelConfig, frozen: int) -> None:
        super().__init__()
        self.config = config
        self.cond = Conditioning(config.cond_features, config.cond_hidden, config.cond_out)
        self.update = NCAUpdate(config.channels, config.cond_out, config.hidden, frozen)
        self.checkpointing = False

    def forward(
        self,
        state: torch.Tensor,
        t: Sequence[int],
        seeds: Sequence[int],
        window: Window = Window(),
        borders: Borders = ALL_BORDERS,
        steps: range | None = None,
    ) -> torch.Tensor:
        """Run the NCA steps `steps` (default: all S) on a state whose first pixel is `window`.

        A sub-range lets a tiled run exchange the full cell state between NCA steps; the
        array shrinks by one pixel per step on its non-border sides.
        """
        cfg = self.config
        t_frac = torch.tensor(t, dtype=state.dtype, device=state.device) / cfg.timesteps
        for s in range(cfg.nca_steps) if steps is None else steps:
            cond = self.cond(t_frac, s / cfg.nca_steps)
            h = state.shape[-2] - (not borders.top) - (not borders.bottom)
            w = state.shape[-1] - (not borders.left) - (not borders.right)
            window = borders.shrink(window)
            mask = fire_mask(
                list(seeds), list(t), s, cfg.fire_probability, h, w, window, state.device
            )
            if mask is not None:
                mask = mask.to(state.dtype)
            if self.checkpointing and torch.is_grad_enabled():
                state = checkpoint(self.update, state, cond, mask, borders, use_reentrant=False)
            else:
                state = self.update(state, cond, mask, borders)
        return state


class DiffNCA(nn.Module):
    """Maps a noisy image x_t and its diffusion step t to predicted noise.

    Tile-local: called on a tile with a halo of S pixels on its non-border sides, it
    returns the prediction for the tile's interior, identical to the crop of the
    whole-image prediction (all randomness keyed by canvas coordinates).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.kind != "diff-nca":
            raise ValueError(f"DiffNCA needs kind diff-nca, not {config.kind}")
        self.config = config
        # Frozen (read, never written) channels: image, coordinates, condition.
        self.condition_at = config.image_channels + (2 if config.canvas_coords else 0)
        self.frozen = self.condition_at + config.condition_channels
        if config.channels < self.frozen + config.image_channels:
            raise ValueError("too few channels for image, coordinates and read-out")
        self.nca = ImageNCA(config, self.frozen)

    def set_checkpointing(self, enabled: bool) -> None:
        """Recompute each NCA step in backward: training memory flat in S."""
        self.nca.checkpointing = enabled

    def initial_state(
        self, x_t: torch.Tensor, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Image (and coordinates, and condition), hidden channels at zero."""
        b, _, h, w = x_t.shape
        parts = [x_t]
        if self.config.canvas_coords:
            parts.append(canvas_coordinates(b, h, w, x_t))
        if condition is not None:
            parts.append(condition.to(x_t.dtype).expand(b, -1, -1, -1))
        zeros = x_t.new_zeros(b, self.config.channels - self.frozen, h, w)
        return torch.cat([*parts, zeros], dim=1)

    def readout(self, state: torch.Tensor) -> torch.Tensor:
        return state[:, self.frozen : self.frozen + self.config.image_channels]

    def forward(
        self,
        x_t: torch.Tensor,
        t: Sequence[int],
        seeds: Sequence[int],
        window: Window = Window(),
        borders: Borders = ALL_BORDERS,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """condition: (B or 1, condition_channels, H, W) on the same region as x_t, already
        on the model's grid (gigasynth.sampling.condition); required by a conditioned
        model, refused by an unconditioned one."""
        if self.config.canvas_coords and (borders != ALL_BORDERS or window != Window()):
            raise ValueError("a model with canvas coordinates runs on whole images only")
        check_condition_region(self.config, x_t, condition)
        state = self.nca(self.initial_state(x_t, condition), t, seeds, window, borders)
        return self.readout(state)


def check_condition_region(
    config: ModelConfig, x_t: torch.Tensor, condition: torch.Tensor | None
) -> None:
    """One-line errors for a condition that does not fit the model or the region."""
    k = config.condition_channels
    if condition is None:
        if k:
            raise GigasynthError(
                f"this model is conditioned ({k}-channel condition at 1/"
                f"{config.condition_downsample} of its grid): give it a condition image"
            )
        return
    if not k:
        raise GigasynthError("this model takes no condition (condition_channels = 0)")
    b, _, h, w = x_t.shape
    if (
        condition.dim() != 4
        or condition.shape[1] != k
        or condition.shape[0] not in (1, b)
        or tuple(condition.shape[-2:]) != (h, w)
    ):
        raise GigasynthError(
            f"condition of shape {tuple(condition.shape)} does not fit the region: "
            f"need ({b} or 1, {k}, {h}, {w})"
        )
