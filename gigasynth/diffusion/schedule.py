"""Forward-process noise schedules (linear and cosine betas)."""

from __future__ import annotations

import math
from typing import Literal

import torch

from gigasynth.errors import GigasynthError


class NoiseSchedule:
    """betas, alphas and cumulative alphas for t = 0 .. T-1, in float64 for exactness.

    Step t (0-based) takes x_{t-1} to x_t; x_0 is the clean image at index -1, i.e.
    `alpha_bar(-1) = 1`.
    """

    def __init__(
        self,
        timesteps: int = 300,
        kind: Literal["linear", "cosine"] = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ) -> None:
        if timesteps < 1:
            raise GigasynthError(f"timesteps must be at least 1, not {timesteps}")
        if kind == "linear":
            betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
        elif kind == "cosine":
            s = 0.008
            steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
            f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        else:
            raise GigasynthError(f"unknown schedule {kind!r} (linear or cosine)")
        self.kind = kind
        self.timesteps = timesteps
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alpha_bars = torch.cumprod(self.alphas, dim=0)

    def alpha_bar(self, t: int) -> float:
        """Cumulative alpha at step t; 1.0 for t = -1 (the clean image)."""
        return 1.0 if t < 0 else float(self.alpha_bars[t])

    def add_noise(
        self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int
    ) -> torch.Tensor:
        """Sample q(x_t | x_0) with the given noise; t is an int or a (B,) tensor."""
        ab = self.alpha_bars.to(x0.device)[torch.as_tensor(t, device=x0.device)]
        ab = ab.to(x0.dtype).reshape(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise
