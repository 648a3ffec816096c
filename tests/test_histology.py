"""What a pathologist sees first, measured on drawn fields whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from gigasynth.eval.histology import coherence_map, histology

PINK = (235, 170, 205)  # eosin-rich stroma
PURPLE = (70, 40, 120)  # haematoxylin-dark nucleus


def _field(rng: np.random.Generator, elongation: float, count: int) -> np.ndarray:
    """A 300 x 300 px field of pink tissue with `count` dark ellipses of about 40 µm² at
    1 µm/px, `elongation` times as long as wide, at random places and angles."""
    field = np.empty((300, 300, 3), np.uint8)
    field[:] = PINK
    ys, xs = np.indices(field.shape[:2])
    b = np.sqrt(40 / (np.pi * elongation))
    a = elongation * b
    for _ in range(count):
        cy, cx, angle = *rng.uniform(10, 290, 2), rng.uniform(0, np.pi)
        u = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
        v = -(xs - cx) * np.sin(angle) + (ys - cy) * np.cos(angle)
        field[(u / a) ** 2 + (v / b) ** 2 <= 1] = PURPLE
    return field


def test_nuclei_density_and_elongation():
    rng = np.random.default_rng(0)
    round_ = histology([_field(rng, 1.0, 60)], mpp=1.0)
    long_ = histology([_field(rng, 3.0, 60)], mpp=1.0)
    # 60 blobs in 0.09 mm² (a few merge or touch the edge): about 670 per mm²
    assert 500 < round_.nuclei_per_mm2 < 700 and 500 < long_.nuclei_per_mm2 < 700
    assert round_.nucleus_elongation < 1.3 < 2.5 < long_.nucleus_elongation < 3.5
    assert round_.eosin_dominant > 0.9  # the pink around the blobs


def test_coherence_sees_parallel_fibres_not_isotropic_texture():
    ys, xs = np.indices((128, 128))
    stripes = (127 + 100 * np.sin(2 * np.pi * (xs + 0.5 * ys) / 9)).astype(np.uint8)
    noise = np.random.default_rng(1).integers(30, 225, (128, 128)).astype(np.uint8)
    for image, low, high in ((stripes, 0.9, 1.0), (noise, 0.0, 0.4)):
        rgb = np.repeat(image[..., None], 3, axis=2)
        inner = coherence_map(rgb, mpp=1.0)[16:-16, 16:-16].mean()
        assert low <= inner <= high, inner


def test_a_field_without_tissue_has_no_histology():
    glass = np.full((64, 64, 3), 245, np.uint8)
    h = histology([glass], mpp=1.0)
    assert h.nuclei_per_mm2 is None and h.coherence is None and h.tissue_mm2 == pytest.approx(0)
