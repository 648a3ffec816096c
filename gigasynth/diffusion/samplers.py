"""DDPM (ancestral) and DDIM samplers: they own the timesteps and the update rule.

A sampler never calls the model: the caller computes eps_hat = model(x_t, t) on
whatever region it holds (a whole image or a tile) and asks the sampler for the next
state. Every coefficient is per pixel, so a sampler step is as local as the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gigasynth.diffusion.schedule import NoiseSchedule
from gigasynth.errors import FieldError, GigasynthError


@dataclass(frozen=True)
class StepCoefficients:
    """x_prev = c_x0 * x0_hat + c_eps * eps_hat + sigma * z."""

    t: int
    t_prev: int
    c_x0: float
    c_eps: float
    sigma: float


class Sampler:
    """Base: a descending list of timesteps and the update from t to the next one."""

    name = "base"

    def __init__(self, schedule: NoiseSchedule, clip_x0: bool = True) -> None:
        self.schedule = schedule
        self.clip_x0 = clip_x0
        self.timesteps: list[int] = []

    def set_timesteps(self, steps: int | None = None, start: int | None = None) -> list[int]:
        """Choose the timesteps, descending from `start` (default T-1)."""
        raise NotImplementedError

    def coefficients(self, t: int, t_prev: int) -> StepCoefficients:
        raise NotImplementedError

    @property
    def stochastic(self) -> bool:
        return True

    def next_timestep(self, t: int) -> int:
        i = self.timesteps.index(t)
        return self.timesteps[i + 1] if i + 1 < len(self.timesteps) else -1

    def predict_x0(self, x_t: torch.Tensor, eps_hat: torch.Tensor, t: int) -> torch.Tensor:
        ab = self.schedule.alpha_bar(t)
        x0 = (x_t - (1 - ab) ** 0.5 * eps_hat) / ab**0.5
        return x0.clamp(-1.0, 1.0) if self.clip_x0 else x0

    def step(
        self,
        eps_hat: torch.Tensor,
        t: int,
        x_t: torch.Tensor,
        noise: torch.Tensor | None,
    ) -> torch.Tensor:
        """The next state x_{t_prev}; `noise` (standard normal) is used where sigma > 0."""
        k = self.coefficients(t, self.next_timestep(t))
        x0 = self.predict_x0(x_t, eps_hat, t)
        if self.clip_x0:
            # Re-derive the noise direction consistent with the clipped x0.
            ab = self.schedule.alpha_bar(t)
            eps_hat = (x_t - ab**0.5 * x0) / (1 - ab) ** 0.5
        out = k.c_x0 * x0 + k.c_eps * eps_hat
        if k.sigma > 0:
            if noise is None:
                raise ValueError("this step needs noise")
            out = out + k.sigma * noise
        return out


class DDIMSampler(Sampler):
    """DDIM with K evenly spaced steps; eta = 0 is deterministic, eta = 1 with K = T is DDPM."""

    name = "ddim"

    def __init__(self, schedule: NoiseSchedule, eta: float = 0.0, clip_x0: bool = True) -> None:
        super().__init__(schedule, clip_x0)
        if eta < 0:
            raise GigasynthError(f"eta must be non-negative, not {eta}")
        self.eta = eta

    @property
    def stochastic(self) -> bool:
        return self.eta > 0

    def set_timesteps(self, steps: int | None = None, start: int | None = None) -> list[int]:
        T = self.schedule.timesteps
        start = T - 1 if start is None else start
        steps = start + 1 if steps is None else steps
        if not 0 <= start < T:
            raise GigasynthError(f"start step {start} outside 0..{T - 1}")
        if not 1 <= steps <= start + 1:
            raise GigasynthError(
                f"steps must be between 1 and {start + 1} (the schedule has T={T}), not {steps}"
            )
        grid = torch.linspace(start, 0, steps, dtype=torch.float64).round().long().tolist()
        self.timesteps = list(dict.fromkeys(int(v) for v in grid))
        return self.timesteps

    def coefficients(self, t: int, t_prev: int) -> StepCoefficients:
        ab_t = self.schedule.alpha_bar(t)
        ab_prev = self.schedule.alpha_bar(t_prev)
        sigma = self.eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)) ** 0.5
        c_eps = max(1 - ab_prev - sigma**2, 0.0) ** 0.5
        return StepCoefficients(t, t_prev, ab_prev**0.5, c_eps, sigma)


class DDPMSampler(Sampler):
    """Ancestral sampling through every step: the posterior q(x_{t-1} | x_t, x0_hat)."""

    name = "ddpm"

    def set_timesteps(self, steps: int | None = None, start: int | None = None) -> list[int]:
        T = self.schedule.timesteps
        start = T - 1 if start is None else start
        if not 0 <= start < T:
            raise GigasynthError(f"start step {start} outside 0..{T - 1}")
        if steps is not None and steps != start + 1:
            raise FieldError(
                f"ddpm runs every step ({start + 1}); use [sampler] ddim for {steps} steps"
            )
        self.timesteps = list(range(start, -1, -1))
        return self.timesteps

    def coefficients(self, t: int, t_prev: int) -> StepCoefficients:
        ab_t = self.schedule.alpha_bar(t)
        ab_prev = self.schedule.alpha_bar(t_prev)
        beta = 1 - ab_t / ab_prev
        # Posterior mean in terms of (x0, x_t); rewrite x_t = sqrt(ab_t) x0 + sqrt(1-ab_t) eps.
        c0 = ab_prev**0.5 * beta / (1 - ab_t)
        ct = (1 - beta) ** 0.5 * (1 - ab_prev) / (1 - ab_t)
        var = beta * (1 - ab_prev) / (1 - ab_t)
        return StepCoefficients(t, t_prev, c0 + ct * ab_t**0.5, ct * (1 - ab_t) ** 0.5, var**0.5)


def make_sampler(name: str, schedule: NoiseSchedule, eta: float = 0.0) -> Sampler:
    """A sampler by name: ddpm or ddim."""
    if name == "ddpm":
        return DDPMSampler(schedule)
    if name == "ddim":
        return DDIMSampler(schedule, eta=eta)
    raise GigasynthError(f"unknown sampler {name!r} (ddpm or ddim)")
