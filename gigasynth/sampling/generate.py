"""Whole-image sampling loops: generate, inpaint and upscale."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gigasynth.config import ModelConfig
from gigasynth.diffusion import NoiseSchedule, make_sampler
from gigasynth.diffusion.samplers import Sampler
from gigasynth.errors import FieldError, GigasynthError
from gigasynth.geometry import Window
from gigasynth.keyed import Stream, key_words, keyed_normal
from gigasynth.models import Denoiser, DiffNCA
from gigasynth.sampling.condition import check_low_condition, model_condition
from gigasynth.sampling.step import denoise_step, initial_noise

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SampleRequest:
    """What to sample: sampler name, number of steps (None: all), eta for DDIM."""

    sampler: str = "ddim"
    steps: int | None = 50
    eta: float = 0.0

    def steps_problem(self, timesteps: int) -> str | None:
        """Why these DDIM steps cannot run on a model of `timesteps` diffusion timesteps
        (a FieldError template), or None: the one statement of the rule, which check_job
        and cascade definitions ask too (ddpm takes no steps)."""
        if self.sampler == "ddim" and self.steps is not None and self.steps > timesteps:
            return (
                f"[steps] {self.steps} exceeds the model's {timesteps} diffusion timesteps; "
                f"give [steps] {timesteps} or fewer"
            )
        return None

    def build(self, model: Denoiser, start: int | None = None) -> Sampler:
        cfg = model.config
        sampler = make_sampler(self.sampler, NoiseSchedule.for_config(cfg), self.eta)
        problem = self.steps_problem(cfg.timesteps)
        if problem is not None:
            raise FieldError(problem)
        sampler.set_timesteps(self.steps if self.sampler == "ddim" else None, start=start)
        return sampler


def _run(
    model: Denoiser,
    sampler: Sampler,
    x: torch.Tensor,
    seeds: Sequence[int],
    after_step: Callable[[torch.Tensor, int], torch.Tensor] | None,
    progress: Progress | None,
    condition: torch.Tensor | None = None,
) -> torch.Tensor:
    total = len(sampler.timesteps)
    with torch.no_grad():
        for i, t in enumerate(sampler.timesteps):
            x = denoise_step(model, sampler, x, t, seeds, condition=condition)
            if after_step is not None:
                x = after_step(x, sampler.next_timestep(t))
            if progress is not None:
                progress(i + 1, total)
    return x


def _condition_of(model: Denoiser) -> int:
    """The condition channels of a conditioned stage; 0 for every other denoiser."""
    config = model.config
    return config.condition_channels if isinstance(config, ModelConfig) else 0


def _refuse_condition(model: Denoiser, what: str) -> None:
    if _condition_of(model):
        raise FieldError(
            f"{what} needs an unconditioned model; a conditioned stage "
            "samples with a condition image (super_resolve, [condition])"
        )


def _check_size(model: Denoiser, height: int, width: int) -> None:
    if height < 2 or width < 2:
        raise GigasynthError(f"image size {width}x{height} is too small (at least 2x2)")
    config = model.config
    if isinstance(config, ModelConfig) and config.kind == "fourier-diff-nca":
        n = config.fourier_block
        if min(height, width) < 2 * n - 1:
            raise GigasynthError(
                f"FourierDiff-NCA needs at least {2 * n - 1} px per side, not {width}x{height}"
            )


def generate(
    model: Denoiser,
    height: int,
    width: int,
    seeds: Sequence[int],
    request: SampleRequest = SampleRequest(),
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    condition: torch.Tensor | None = None,
    condition_noise: float | None = None,
) -> torch.Tensor:
    """Sample len(seeds) images of height x width; returns (B, 3, H, W) in [-1, 1].

    A conditioned model needs `condition`: (1 or B, condition_channels, H / f, W / f) in
    [-1, 1] at 1/f of the output (f = condition_downsample); `condition_noise` overrides
    the noise added to it (default the model's training level).
    """
    _check_size(model, height, width)
    config = model.config
    cond = None
    if isinstance(config, ModelConfig):  # NCAs (conditioned or not); the UNet has no condition
        check_low_condition(config, condition, len(seeds), height, width)
        if condition is not None:
            cond = model_condition(
                config, condition.to(device), seeds, height, width, noise=condition_noise
            )
    elif condition is not None:
        raise GigasynthError("this model takes no condition (it is not a conditioned stage)")
    sampler = request.build(model)
    x = initial_noise(seeds, sampler.timesteps[0], 3, height, width, Window(), device)
    return _run(model, sampler, x, seeds, None, progress, cond)


def super_resolve(
    model: DiffNCA,
    low: torch.Tensor,
    seeds: Sequence[int],
    request: SampleRequest = SampleRequest(),
    progress: Progress | None = None,
    condition_noise: float | None = None,
) -> torch.Tensor:
    """A conditioned stage's output for a low-resolution image (1 or B, C, h, w) in [-1, 1]:
    (len(seeds), 3, h * f, w * f), f the model's condition_downsample, from pure noise."""
    if not _condition_of(model):
        raise GigasynthError(
            "this model takes no condition (it is not a conditioned stage); "
            "use upscale for training-free super-resolution"
        )
    f = model.config.condition_downsample
    if low.dim() != 4:
        raise GigasynthError(f"condition of shape {tuple(low.shape)} is not (B, C, H, W)")
    height, width = low.shape[-2] * f, low.shape[-1] * f
    return generate(
        model, height, width, seeds, request, low.device, progress, low, condition_noise
    )


def inpaint(
    model: Denoiser,
    known: torch.Tensor,
    mask: torch.Tensor,
    seeds: Sequence[int],
    request: SampleRequest = SampleRequest(),
    progress: Progress | None = None,
) -> torch.Tensor:
    """Fill where mask == 0; where mask == 1 the known image, re-noised to each step's t.

    known: (B, 3, H, W) in [-1, 1]; mask: (B or 1, 1, H, W) of 0/1.
    """
    _refuse_condition(model, "inpainting")
    _, _, height, width = known.shape
    _check_size(model, height, width)
    sampler = request.build(model)
    schedule = sampler.schedule

    def renoise_known(x: torch.Tensor, t: int) -> torch.Tensor:
        if t < 0:
            return mask * known + (1 - mask) * x
        keys = key_words(list(seeds), Stream.INPAINT_NOISE, t, 0)
        noise = keyed_normal(keys, 3, height, width, Window(), known.device)
        return mask * schedule.add_noise(known, noise, t) + (1 - mask) * x

    x = initial_noise(seeds, sampler.timesteps[0], 3, height, width, Window(), known.device)
    x = renoise_known(x, sampler.timesteps[0])
    return _run(model, sampler, x, seeds, renoise_known, progress)


def upscale(
    model: Denoiser,
    image: torch.Tensor,
    factor: float,
    seeds: Sequence[int],
    start: int | None = None,
    request: SampleRequest = SampleRequest(),
    progress: Progress | None = None,
) -> torch.Tensor:
    """Super-resolution: bicubic upsampling, noise to step `start` (default T/10), denoise."""
    _refuse_condition(model, "training-free upscaling")
    if factor <= 0:
        raise GigasynthError(f"upscale factor must be positive, not {factor}")
    _, _, h, w = image.shape
    height, width = round(h * factor), round(w * factor)
    _check_size(model, height, width)
    T = model.config.timesteps
    start = T // 10 if start is None else start
    if not 0 <= start < T:
        raise FieldError(f"[t_start] must be in 0..{T - 1}, not {start}")
    steps = None if request.steps is None else min(request.steps, start + 1)
    sampler = SampleRequest(request.sampler, steps, request.eta).build(model, start=start)
    up = F.interpolate(image, size=(height, width), mode="bicubic", align_corners=False)
    up = up.clamp(-1, 1)
    noise = initial_noise(seeds, start, 3, height, width, Window(), image.device)
    x = sampler.schedule.add_noise(up, noise, start)
    return _run(model, sampler, x, seeds, None, progress)
