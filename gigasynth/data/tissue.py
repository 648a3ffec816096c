"""Tissue detection: Otsu threshold on the saturation of a slide thumbnail, cached per run."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gigasynth.atomic import atomic_write_bytes


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


MIN_SATURATION = 20  # the threshold's floor, for blank (all-background) images


def tissue_threshold(thumbnail: np.ndarray, min_saturation: int = MIN_SATURATION) -> float:
    """The saturation above which a pixel is tissue: Otsu's threshold over the whole
    thumbnail, floored. Computed once per slide, it also labels that slide's small crops,
    which are too small for a threshold of their own (a mask-conditioned stage's training)."""
    return max(otsu_threshold(saturation(thumbnail)), float(min_saturation))


def tissue_mask(thumbnail: np.ndarray, min_saturation: int = MIN_SATURATION) -> np.ndarray:
    """Boolean mask of tissue: saturation above Otsu's threshold (and a floor for blank slides)."""
    return saturation(thumbnail) > tissue_threshold(thumbnail, min_saturation)


# Bump when the mask computation changes: old cache files are then ignored.
MASK_METHOD = "otsu-saturation-v1"
THUMBNAIL_SIDE = 1024


def cache_key(slide: Path) -> str:
    """A slide's cache key: its absolute path, size and modification time, and the method.

    Cheap (no read of a multi-gigabyte file); a slide replaced in place gets a new key.
    """
    stat = slide.stat()
    text = f"{slide.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{MASK_METHOD}|{THUMBNAIL_SIDE}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cached_tissue_mask(
    slide: Path, thumbnail: Callable[[], np.ndarray], cache_dir: Path | None
) -> np.ndarray:
    """The slide's tissue mask, computed once from `thumbnail()` and kept in `cache_dir`.

    The cache holds `<key>.npz` (mask, slide path, method); a missing or unreadable
    cache file is recomputed and rewritten atomically.
    """
    if cache_dir is None:
        return tissue_mask(thumbnail())
    path = cache_dir / f"{cache_key(slide)}.npz"
    if path.exists():
        try:
            with np.load(path) as data:
                return data["mask"].astype(bool)
        except (OSError, ValueError, KeyError):
            pass
    mask = tissue_mask(thumbnail())
    buf = io.BytesIO()
    np.savez_compressed(buf, mask=mask, slide=str(slide.resolve()), method=MASK_METHOD)
    atomic_write_bytes(path, buf.getvalue())
    return mask
