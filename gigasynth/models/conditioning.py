"""Conditioning on diffusion time and NCA step: a sinusoidal encoding and a small MLP."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_features(values: torch.Tensor, features: int) -> torch.Tensor:
    """Encode scalars in [0, 1] of shape (B, n) as (B, features) sines and cosines."""
    n = values.shape[1]
    per_value = features // (2 * n)
    if per_value < 1 or per_value * 2 * n != features:
        raise ValueError(f"features={features} must be a multiple of 2 * {n}")
    freqs = math.pi * 2.0 ** torch.arange(per_value, dtype=values.dtype, device=values.device)
    angles = values.unsqueeze(-1) * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(1)


class Conditioning(nn.Module):
    """Maps (t / T, s / S) per sample to a few constant conditioning channels."""

    def __init__(self, features: int, hidden: int, out: int) -> None:
        super().__init__()
        self.features = features
        self.mlp = nn.Sequential(nn.Linear(features, hidden), nn.SiLU(), nn.Linear(hidden, out))

    def forward(self, t_frac: torch.Tensor, s_frac: float) -> torch.Tensor:
        """t_frac: (B,) diffusion time in [0, 1]; s_frac: NCA step in [0, 1]. Returns (B, out)."""
        values = torch.stack([t_frac, torch.full_like(t_frac, s_frac)], dim=1)
        return self.mlp(sinusoidal_features(values, self.features))
