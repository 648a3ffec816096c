"""Tissue detection: Otsu threshold on the saturation of a slide thumbnail."""

from __future__ import annotations

import numpy as np


def otsu_threshold(values: np.ndarray) -> float:
    """The threshold that maximises between-class variance of uint8 values."""
    hist = np.bincount(values.ravel().astype(np.uint8), minlength=256).astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 0.0
    levels = np.arange(256, dtype=np.float64)
    weight0 = np.cumsum(hist)
    weight1 = total - weight0
    mean0 = np.cumsum(hist * levels) / np.maximum(weight0, 1)
    mean1 = ((hist * levels).sum() - np.cumsum(hist * levels)) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    return float(np.argmax(between))


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation of (H, W, 3) uint8 as uint8."""
    rgb = rgb.astype(np.float32)
    mx = rgb.max(axis=-1)
    mn = rgb.min(axis=-1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    return (sat * 255).round().astype(np.uint8)


def tissue_mask(thumbnail: np.ndarray, min_saturation: int = 20) -> np.ndarray:
    """Boolean mask of tissue: saturation above Otsu's threshold (and a floor for blank slides)."""
    sat = saturation(thumbnail)
    threshold = max(otsu_threshold(sat), float(min_saturation))
    return sat > threshold
