"""Conversions between model space ([-1, 1] float, NCHW) and uint8 RGB images, and PNG I/O."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from gigasynth.atomic import atomic_path
from gigasynth.errors import GigasynthError


def to_model_space(rgb: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) or (H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1]."""
    if rgb.ndim == 3:
        rgb = rgb[None]
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [-1, 1] -> (N, H, W, 3) uint8 (rounded, clipped)."""
    x = ((x.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise GigasynthError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise GigasynthError(f"cannot read image {path}: {exc}") from None


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write (H, W, 3) uint8 as PNG atomically (temporary file, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    return path


def grid(images: np.ndarray, columns: int) -> np.ndarray:
    """Tile (N, H, W, 3) images into one (rows * H, columns * W, 3) image."""
    n, h, w, c = images.shape
    rows = -(-n // columns)
    out = np.full((rows * h, columns * w, c), 255, dtype=images.dtype)
    for i, img in enumerate(images):
        r, col = divmod(i, columns)
        out[r * h : (r + 1) * h, col * w : (col + 1) * w] = img
    return out
