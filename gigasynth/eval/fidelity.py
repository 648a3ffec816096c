"""Pixel fidelity against a ground truth: PSNR and SSIM, optionally inside a mask.

Used where a true image exists (inpainting, super-resolution). Inputs are
(N, H, W, 3) uint8; a mask is (N or 1, H, W) with 1 where a pixel counts. Scores are
computed per image and averaged over images.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gigasynth.errors import GigasynthError


def _as_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).double()


def _weights(mask: np.ndarray | None, shape: tuple[int, ...]) -> torch.Tensor:
    n, h, w, _ = shape
    if mask is None:
        return torch.ones(n, 1, h, w, dtype=torch.float64)
    m = torch.from_numpy(np.asarray(mask, dtype=np.float64))
    if m.ndim != 3 or m.shape[1:] != (h, w) or m.shape[0] not in (1, n):
        raise GigasynthError(f"mask of shape {tuple(m.shape)} does not fit images {shape}")
    m = m[:, None].expand(n, 1, h, w)
    if (m.sum(dim=(1, 2, 3)) == 0).any():
        raise GigasynthError("a mask selects no pixels")
    return m


def _check(truth: np.ndarray, images: np.ndarray) -> None:
    if truth.shape != images.shape or truth.ndim != 4 or truth.shape[-1] != 3:
        raise GigasynthError(f"compare equal (N, H, W, 3) sets, not {truth.shape} {images.shape}")


def psnr(truth: np.ndarray, images: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean PSNR in dB (peak 255) over images; MSE over the mask's pixels and channels."""
    _check(truth, images)
    weights = _weights(mask, truth.shape)
    sq = (_as_float(truth) - _as_float(images)) ** 2
    mse = (sq * weights).sum(dim=(1, 2, 3)) / (3 * weights.sum(dim=(1, 2, 3)))
    return float((10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))).mean())


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(3, 1, size, size)


def ssim_map(truth: np.ndarray, images: np.ndarray) -> torch.Tensor:
    """Per-pixel SSIM (N, 3, H, W): Gaussian window 11 / sigma 1.5, reflect-padded borders."""
    _check(truth, images)
    x, y = _as_float(truth), _as_float(images)
    window = _gaussian_window()
    pad = window.shape[-1] // 2
    if min(truth.shape[1:3]) <= pad:
        raise GigasynthError(f"SSIM needs images larger than {pad} px")

    def smooth(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(z, (pad, pad, pad, pad), mode="reflect"), window, groups=3)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = smooth(x), smooth(y)
    vx, vy = smooth(x * x) - mx**2, smooth(y * y) - my**2
    cov = smooth(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def ssim(truth: np.ndarray, images: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM over the mask's pixels and channels, then over images."""
    weights = _weights(mask, truth.shape)
    values = ssim_map(truth, images) * weights
    return float((values.sum(dim=(1, 2, 3)) / (3 * weights.sum(dim=(1, 2, 3)))).mean())
