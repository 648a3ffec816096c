"""What a pathologist sees first, measured on an RGB field at a known µm per pixel.

- Glass noise: the luminance standard deviation (0-255) of glass at least GLASS_MARGIN_UM
  from any tissue. Real glass is flat (a slide scanner's noise and dust); a model that
  draws grain on glass shows it here, where band energy mixes it with tissue detail.
- Nuclei: connected blobs of haematoxylin optical density above NUCLEUS_H_OD (colour
  deconvolution, Ruifrok & Johnston) of 8-200 µm², per mm² of tissue, and their median
  elongation (the square root of the ratio of their second moments' eigenvalues: 1 for a
  disc, 3 for an ellipse three times as long as wide).
- Oriented structure: the coherence of the luminance structure tensor (gradients at
  1 µm, integrated over a Gaussian of COHERENCE_UM), (l1 - l2) / (l1 + l2), averaged over
  tissue: 0 for isotropic texture, 1 for parallel fibres.
- Stain balance: the share of tissue pixels whose eosin OD exceeds their haematoxylin OD.

Tissue is any pixel off the background: optical density at least BACKGROUND_OD in some
channel (the test every slide figure uses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

GLASS_MARGIN_UM = 20.0
BACKGROUND_OD = 0.15  # near-white: optical density below this in every channel (Macenko's beta)
LUMA = np.array([0.299, 0.587, 0.114])  # Rec. 601 luminance
# Ruifrok & Johnston (2001) stain optical-density vectors (R, G, B), rows normalised below.
STAIN_VECTORS = np.array(
    [
        [0.650, 0.704, 0.286],  # haematoxylin
        [0.072, 0.990, 0.105],  # eosin
        [0.268, 0.570, 0.776],  # DAB (the third, residual axis)
    ]
)
# The Otsu threshold of haematoxylin OD over the sample slide's train-region tissue at
# 0.998 µm/px (calibrated on the train region only; val and test give 0.57 and 0.42).
NUCLEUS_H_OD = 0.57
NUCLEUS_AREA_UM2 = (8.0, 200.0)
COHERENCE_UM = 2.0
MIN_TISSUE_PIXELS = 100  # fewer: no histology figure


def optical_density(image: np.ndarray) -> np.ndarray:
    """(.., 3) uint8 -> optical density -log10((I + 1) / 256) per channel, float32."""
    return -np.log10((image.astype(np.float32) + 1.0) / 256.0)


def tissue_pixels(rgb: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose optical density reaches BACKGROUND_OD in some channel."""
    return np.any(optical_density(rgb) >= BACKGROUND_OD, axis=-1)


def far_glass(rgb: np.ndarray, mpp: float, margin_um: float = GLASS_MARGIN_UM) -> np.ndarray:
    """(H, W) bool: glass at least `margin_um` from any tissue pixel (and from the field's
    edge, which may hide tissue just outside it)."""
    radius = math.ceil(margin_um / mpp)
    tissue = torch.from_numpy(tissue_pixels(rgb).astype(np.float32))[None, None]
    near = F.max_pool2d(F.pad(tissue, (radius,) * 4, value=1.0), 2 * radius + 1, stride=1)
    return near[0, 0].numpy() == 0


def glass_noise(rgb: np.ndarray, mpp: float) -> tuple[float | None, int]:
    """The luminance std (0-255) of far glass and how many pixels it was measured on (None
    where the field has no such glass)."""
    glass = far_glass(rgb, mpp)
    count = int(glass.sum())
    if count < 2:
        return None, count
    luma = rgb.astype(np.float64) @ LUMA
    return float(luma[glass].std()), count


def stain_matrix() -> np.ndarray:
    """Inverse of the row-normalised Ruifrok-Johnston matrix: OD (.., 3) @ it -> H, E, DAB."""
    vectors = STAIN_VECTORS / np.linalg.norm(STAIN_VECTORS, axis=1, keepdims=True)
    return np.linalg.inv(vectors)


@dataclass(frozen=True)
class Histology:
    """What `histology` measured on one field (None where the field has too little tissue)."""

    tissue_mm2: float
    nuclei_per_mm2: float | None
    nuclei: int
    nucleus_elongation: float | None  # median over nuclei
    coherence: float | None  # mean over tissue pixels
    eosin_dominant: float | None  # share of tissue pixels


def _gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    k = torch.exp(-(torch.arange(-radius, radius + 1, dtype=x.dtype) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))


def coherence_map(rgb: np.ndarray, mpp: float) -> np.ndarray:
    """(H, W) structure-tensor coherence of the luminance (see the module docstring)."""
    luma = torch.from_numpy((rgb.astype(np.float32) @ LUMA.astype(np.float32)) / 255.0)
    x = _gaussian(luma[None, None], max(0.5, 1.0 / mpp))
    gx = (
        F.pad(x, (1, 1, 0, 0), mode="replicate")[..., 2:]
        - F.pad(x, (1, 1, 0, 0), mode="replicate")[..., :-2]
    ) / 2
    gy = (
        F.pad(x, (0, 0, 1, 1), mode="replicate")[..., 2:, :]
        - F.pad(x, (0, 0, 1, 1), mode="replicate")[..., :-2, :]
    ) / 2
    sigma = COHERENCE_UM / mpp
    jxx, jyy, jxy = (_gaussian(g, sigma) for g in (gx * gx, gy * gy, gx * gy))
    trace = jxx + jyy
    delta = torch.sqrt((jxx - jyy) ** 2 + 4 * jxy**2)
    return (delta / trace.clamp(min=1e-12))[0, 0].numpy()


def _nuclei(h: np.ndarray, tissue: np.ndarray, mpp: float) -> list[float]:
    """The elongation of every nucleus (haematoxylin blob of NUCLEUS_AREA_UM2) of a field."""
    from scipy import ndimage  # type: ignore[import-untyped]

    labels, count = ndimage.label((h > NUCLEUS_H_OD) & tissue)
    index = np.arange(1, count + 1)
    area = ndimage.sum_labels(np.ones_like(h), labels, index) * mpp * mpp
    keep = index[(area >= NUCLEUS_AREA_UM2[0]) & (area <= NUCLEUS_AREA_UM2[1])]
    if not len(keep):
        return []
    ys, xs = np.indices(labels.shape, dtype=np.float64)
    n = ndimage.sum_labels(np.ones_like(ys), labels, keep)
    my, mx = (ndimage.sum_labels(c, labels, keep) / n for c in (ys, xs))
    cyy, cxx, cxy = (
        ndimage.sum_labels(c, labels, keep) / n - a * b
        for c, a, b in ((ys * ys, my, my), (xs * xs, mx, mx), (ys * xs, my, mx))
    )
    half_trace, root = (cyy + cxx) / 2, np.sqrt(((cyy - cxx) / 2) ** 2 + cxy**2)
    pixel = 1.0 / 12  # a pixel's own second moment: a one-pixel blob is a disc, not a point
    long, short = half_trace + root + pixel, np.maximum(half_trace - root, 0.0) + pixel
    return np.sqrt(long / short).tolist()


def histology(fields: list[np.ndarray], mpp: float) -> Histology:
    """Nuclei, oriented structure and stain balance of (H, W, 3) uint8 fields at `mpp`,
    pooled over the fields (nuclei per mm² of all their tissue, means over all of it)."""
    tissue_px, nuclei, coherence_sum, eosin = 0, [], 0.0, 0
    for rgb in fields:
        tissue = tissue_pixels(rgb)
        if not tissue.any():
            continue
        stains = optical_density(rgb) @ stain_matrix().astype(np.float32)
        h, e = stains[..., 0], stains[..., 1]
        nuclei += _nuclei(h, tissue, mpp)
        coherence_sum += float(coherence_map(rgb, mpp)[tissue].sum())
        eosin += int((e[tissue] > h[tissue]).sum())
        tissue_px += int(tissue.sum())
    tissue_mm2 = tissue_px * mpp * mpp * 1e-6
    if tissue_px < MIN_TISSUE_PIXELS:
        return Histology(tissue_mm2, None, len(nuclei), None, None, None)
    return Histology(
        tissue_mm2,
        len(nuclei) / tissue_mm2,
        len(nuclei),
        float(np.median(nuclei)) if nuclei else None,
        coherence_sum / tissue_px,
        eosin / tissue_px,
    )
