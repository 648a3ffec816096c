"""One diffusion step on a region of the canvas: the unit both whole-image and tiled runs use.

All randomness is keyed by canvas coordinates (invariant I3), so the step computed
on a tile with its halo equals the crop of the step computed on the whole image.

The image carried from one diffusion step to the next is rounded to STATE_DTYPE
(float16) wherever it is computed, whole image or tile: the tiled engine stores it in
that precision between steps (6 bytes per pixel instead of 12), and rounding at the
same point in both paths keeps them bitwise equal. Half a float16 step (2.4e-4 near 1)
is 1/32 of one uint8 level of the output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gigasynth.diffusion.samplers import Sampler
from gigasynth.geometry import ALL_BORDERS, Borders, Window
from gigasynth.keyed import Stream, key_words, keyed_normal
from gigasynth.models import Denoiser

STATE_DTYPE = torch.float16


def round_state(x: torch.Tensor) -> torch.Tensor:
    """x_{t_prev} rounded to the precision it is stored in between diffusion steps."""
    return x.to(STATE_DTYPE).to(x.dtype)


def initial_noise(
    seeds: Sequence[int],
    t: int,
    channels: int,
    height: int,
    width: int,
    window: Window = Window(),
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """x_T for the given region: keyed standard normal noise."""
    keys = key_words(list(seeds), Stream.INIT_NOISE, t, 0)
    return keyed_normal(keys, channels, height, width, window, device)


def step_noise(
    seeds: Sequence[int], t: int, shape: torch.Size, window: Window, device: torch.device
) -> torch.Tensor:
    keys = key_words(list(seeds), Stream.STEP_NOISE, t, 0)
    return keyed_normal(keys, shape[1], shape[2], shape[3], window, device)


def denoise_step(
    model: Denoiser,
    sampler: Sampler,
    x_t: torch.Tensor,
    t: int,
    seeds: Sequence[int],
    window: Window = Window(),
    borders: Borders = ALL_BORDERS,
    condition: torch.Tensor | None = None,
) -> torch.Tensor:
    """x_t on a region (tile plus halo) -> x_{t_prev} on the region's interior.

    `window` is the canvas position of x_t's first pixel; `borders` says which sides of
    x_t lie on the canvas border. The interior is x_t less `model.config.halo` pixels
    on every non-border side. The result is rounded by `round_state`. A conditioned
    model takes `condition` on the same region as x_t, on the model's grid
    (`gigasynth.sampling.condition.model_condition`).
    """
    halo = model.config.halo
    top, left = (0 if borders.top else halo), (0 if borders.left else halo)
    bottom = x_t.shape[-2] - (0 if borders.bottom else halo)
    right = x_t.shape[-1] - (0 if borders.right else halo)
    extra = {} if condition is None else {"condition": condition}
    eps_hat = model(x_t, [t] * x_t.shape[0], seeds, window, borders, **extra).float()
    interior = x_t[..., top:bottom, left:right].float()
    noise = None
    if sampler.stochastic and sampler.next_timestep(t) >= 0:
        inner = Window(window.y0 + top, window.x0 + left)
        noise = step_noise(seeds, t, interior.shape, inner, interior.device)
    return round_state(sampler.step(eps_hat, t, interior, noise))
