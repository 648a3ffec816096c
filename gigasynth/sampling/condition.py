"""The conditioning image of a conditioned Diff-NCA (a super-resolution stage).

A stage is given its condition at 1/f of its grid (f = `condition_downsample`): the stage
below's output, or in training a real crop area-downsampled by f. The condition is brought
to the model's grid by bilinear upsampling (half-pixel centres, as `F.interpolate` with
`align_corners=False`; edges repeat the last low-resolution pixel), and keyed Gaussian
noise of std `condition_noise` is added.

Why bilinear, not nearest: nearest upsampling draws block edges every f pixels that carry
no image content but are the strongest gradients the 3x3 perception sees, at a fixed phase
of the canvas; bilinear upsampling has none, and it is the natural reading of a thumbnail.
Why noise: a stage is trained on downsampled real crops but sampled on the stage below's
output, which is never exactly a downsampled slide; noise in training (and, at the same
level, in sampling, so both see the same distribution) keeps a stage from trusting
low-resolution detail that a previous stage got wrong (Ho et al. 2021, cascaded diffusion).

Every output pixel is a pure function of its canvas coordinates, the low-resolution pixels
it reads and keyed noise (invariant I3), so a tile computes the same condition for its
window, with any halo, as the whole image does: the upsampling takes the window's canvas
position and a low-resolution crop with its own position.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gigasynth.config import ModelConfig
from gigasynth.data.tissue import saturation
from gigasynth.errors import GigasynthError
from gigasynth.geometry import Window
from gigasynth.images import to_model_space
from gigasynth.keyed import Stream, key_words, keyed_normal


def area_downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Mean over factor x factor blocks: (B, C, H, W) -> (B, C, H / f, W / f)."""
    if x.shape[-2] % factor or x.shape[-1] % factor:
        raise GigasynthError(
            f"a {x.shape[-1]}x{x.shape[-2]} image does not divide into {factor}x{factor} blocks"
        )
    return x if factor == 1 else F.avg_pool2d(x, factor)


def _taps(
    start: int, size: int, factor: int, length: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Low-resolution indices (i0, i1) and weights (1 - w, w) of output pixels start..+size."""
    g = torch.arange(start, start + size, dtype=torch.float64, device=device)
    src = ((g + 0.5) / factor - 0.5).clamp(min=0.0)
    i0 = src.floor()
    w = src - i0
    i0 = i0.long().clamp(max=length - 1)
    i1 = (i0 + 1).clamp(max=length - 1)
    return i0, i1, (1.0 - w).to(torch.float32), w.to(torch.float32)


def source_span(start: int, size: int, factor: int, length: int) -> tuple[int, int]:
    """[first, last) low-resolution indices that output pixels start..start+size read."""
    i0, i1, _, _ = _taps(start, size, factor, length, torch.device("cpu"))
    return int(i0.min()), int(i1.max()) + 1


def upsample_bilinear(
    low: torch.Tensor,
    factor: int,
    height: int,
    width: int,
    window: Window = Window(),
    low_window: Window = Window(),
    low_shape: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Bilinear upsampling by `factor` of pixels (window.y0.., window.x0..) of the canvas.

    low: (B, C, h, w), the low-resolution pixels from (low_window.y0, low_window.x0) of a
    low-resolution canvas of shape `low_shape` (default: `low` is the whole canvas); it must
    hold every pixel the output reads (`source_span`). Returns (B, C, height, width) float32.
    """
    low = low.float()
    lh, lw = low_shape if low_shape is not None else tuple(low.shape[-2:])
    y0, y1, wy0, wy1 = _taps(window.y0, height, factor, lh, low.device)
    x0, x1, wx0, wx1 = _taps(window.x0, width, factor, lw, low.device)
    y0, y1 = y0 - low_window.y0, y1 - low_window.y0
    x0, x1 = x0 - low_window.x0, x1 - low_window.x0
    if (
        min(int(y0.min()), int(x0.min())) < 0
        or int(y1.max()) >= low.shape[-2]
        or int(x1.max()) >= low.shape[-1]
    ):
        raise ValueError("the low-resolution crop does not cover the window")
    rows = low[:, :, y0] * wy0[:, None] + low[:, :, y1] * wy1[:, None]
    return rows[..., x0] * wx0 + rows[..., x1] * wx1


def condition_noise(
    seeds: Sequence[int],
    channels: int,
    height: int,
    width: int,
    window: Window = Window(),
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Keyed standard normal noise for the condition of each sample (one draw per sample)."""
    keys = key_words(list(seeds), Stream.CONDITION_NOISE, 0, 0)
    return keyed_normal(keys, channels, height, width, window, device)


def model_condition(
    config: ModelConfig,
    low: torch.Tensor,
    seeds: Sequence[int],
    height: int,
    width: int,
    window: Window = Window(),
    low_window: Window = Window(),
    low_shape: tuple[int, int] | None = None,
    noise: float | None = None,
) -> torch.Tensor:
    """The condition on the model's grid for a region: upsampled, plus keyed noise.

    noise: its std in [-1, 1] units (default the model's `condition_noise`, the training
    level). Returns (len(seeds), condition_channels, height, width) float32.
    """
    std = config.condition_noise if noise is None else noise
    if std < 0:
        raise GigasynthError(f"condition noise must be >= 0, not {std}")
    up = upsample_bilinear(
        low, config.condition_downsample, height, width, window, low_window, low_shape
    )
    up = up.expand(len(seeds), -1, -1, -1)
    if std == 0:
        return up.contiguous()
    z = condition_noise(seeds, up.shape[1], height, width, window, up.device)
    return up + std * z


def mask_values(tissue: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A tissue mask as a mask stage's condition values: +1 tissue, -1 background, float32,
    the same (..., H, W) shape."""
    t = torch.as_tensor(np.asarray(tissue, dtype=bool))
    return t.float() * 2.0 - 1.0


def image_condition(rgb: np.ndarray, config: ModelConfig) -> np.ndarray:
    """A stage's condition from an (h, w, 3) uint8 image, as (k, h, w) float32 in [-1, 1]:
    RGB for a 3-channel stage, the grey mean for a 1-channel one (for a mask stage: +1
    where light, tissue, -1 elsewhere). The one reading of a condition image, shared by
    the tiled engine and in-memory cascades."""
    k = config.condition_channels
    if k not in (1, 3):
        raise GigasynthError(
            f"the stage takes a {k}-channel condition; an image gives 1 (grey) or 3 (RGB)"
        )
    low = to_model_space(np.array(rgb))[0].numpy()  # a writable copy for torch
    if k == 1:
        low = low.mean(axis=0, keepdims=True)
        if config.condition_kind == "mask":  # a tissue mask: light pixels are tissue
            low = np.where(low > 0, 1.0, -1.0)
    return np.ascontiguousarray(low, dtype=np.float32)


def crop_tissue(low: torch.Tensor, threshold: float) -> torch.Tensor:
    """The tissue mask of low-resolution crops (B, 3, h, w) in [-1, 1] as (B, 1, h, w)
    condition values: saturation above the slide's threshold (gigasynth.data.tissue)."""
    rgb = ((low.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    sat = saturation(rgb.permute(0, 2, 3, 1).numpy())
    return mask_values(sat > threshold)[:, None].to(low.device)


def training_condition(
    config: ModelConfig,
    x0: torch.Tensor,
    seeds: Sequence[int],
    tissue_threshold: float | None = None,
) -> torch.Tensor:
    """The condition a training crop x0 (B, C, H, W) gets: area-downsampled by the model's
    factor (for a mask stage: that crop's tissue mask, by the slide's saturation
    threshold), upsampled back, plus keyed noise (the crop is its own canvas)."""
    f = config.condition_downsample
    low = area_downsample(x0.float(), f)
    if config.condition_kind == "mask":
        if tissue_threshold is None:
            raise GigasynthError("a mask stage trains on slides: their tissue threshold is needed")
        low = crop_tissue(low, tissue_threshold)
    return model_condition(config, low, seeds, x0.shape[-2], x0.shape[-1])


def check_low_condition(
    config: ModelConfig, low: torch.Tensor | None, batch: int, height: int, width: int
) -> None:
    """One-line errors for a whole-image low-resolution condition (or a missing one)."""
    k, f = config.condition_channels, config.condition_downsample
    if low is None:
        if k:
            raise GigasynthError(
                f"this model is a conditioned stage: it needs a {k}-channel condition image "
                f"at 1/{f} of the output size"
            )
        return
    if not k:
        raise GigasynthError("this model takes no condition (it is not a conditioned stage)")
    if low.dim() != 4 or low.shape[1] != k or low.shape[0] not in (1, batch):
        raise GigasynthError(
            f"condition of shape {tuple(low.shape)} does not fit: need ({batch} or 1, {k}, "
            "height, width)"
        )
    if height % f or width % f:
        raise GigasynthError(
            f"output size {width}x{height} is not a multiple of the "
            f"condition's downsample factor {f}"
        )
    if tuple(low.shape[-2:]) != (height // f, width // f):
        raise GigasynthError(
            f"condition is {low.shape[-1]}x{low.shape[-2]} px; a {width}x{height} output "
            f"needs it at 1/{f}: {width // f}x{height // f} px"
        )
