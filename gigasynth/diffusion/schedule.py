"""Forward-process noise schedules (linear and cosine betas), optionally zero terminal SNR."""

from __future__ import annotations

import math
from typing import Literal, Protocol

import torch

from gigasynth.errors import GigasynthError


class ScheduleConfig(Protocol):
    """The schedule fields of a denoiser's config (ModelConfig, UNetConfig)."""

    @property
    def timesteps(self) -> int: ...

    @property
    def schedule(self) -> Literal["linear", "cosine"]: ...

    @property
    def zero_terminal_snr(self) -> bool: ...


# alpha_bar at the last step of a zero-terminal-SNR schedule. Exactly 0 would make x_T pure
# noise, where predicting the noise tells nothing about x_0 (x0_hat = (x_T - eps_hat) / 0);
# 2^-24 keeps x0_hat defined (the sampler clips it) while x_T is noise to float32 precision.
TERMINAL_ALPHA_BAR = 2.0**-24


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
        zero_terminal_snr: bool = False,
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
        alpha_bars = torch.cumprod(1.0 - betas, dim=0)
        if zero_terminal_snr:
            alpha_bars = rescale_zero_terminal_snr(alpha_bars)
            betas = 1.0 - alpha_bars / torch.cat([alpha_bars.new_ones(1), alpha_bars[:-1]])
        self.kind = kind
        self.zero_terminal_snr = zero_terminal_snr
        self.timesteps = timesteps
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alpha_bars = alpha_bars

    @classmethod
    def for_config(cls, config: ScheduleConfig) -> NoiseSchedule:
        """The schedule a model was trained with (its config's T, kind and terminal SNR)."""
        return cls(config.timesteps, config.schedule, zero_terminal_snr=config.zero_terminal_snr)

    def snr(self, t: torch.Tensor | list[int]) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) at steps t (float64)."""
        ab = self.alpha_bars[torch.as_tensor(t)]
        return ab / (1.0 - ab)

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


def rescale_zero_terminal_snr(alpha_bars: torch.Tensor) -> torch.Tensor:
    """Lin et al. (2024): shift and scale sqrt(alpha_bar) so the first is kept and the last is 0.

    Training then sees pure noise at t = T - 1, the state sampling starts from (a linear
    schedule of T = 300 otherwise leaves sqrt(alpha_bar_T) = 0.22 of the image in x_T).
    The last value is clamped to TERMINAL_ALPHA_BAR for epsilon prediction.
    """
    root = alpha_bars.sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * first / (first - last)
    out = root**2
    out[-1] = TERMINAL_ALPHA_BAR
    return out
