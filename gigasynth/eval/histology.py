"""What a pathologist sees first, measured on an RGB field at a known µm per pixel.

- Glass noise: the luminance standard deviation (0-255) of glass at least GLASS_MARGIN_UM
  from any tissue. Real glass is flat (a slide scanner's noise and dust); a model that
  draws grain on glass shows it here, where band energy mixes it with tissue detail.

Tissue is any pixel off the background: optical density at least BACKGROUND_OD in some
channel (the test every slide figure uses).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

GLASS_MARGIN_UM = 20.0
BACKGROUND_OD = 0.15  # near-white: optical density below this in every channel (Macenko's beta)
LUMA = np.array([0.299, 0.587, 0.114])  # Rec. 601 luminance


def optical_density(image: np.ndarray) -> np.ndarray:
    """(.., 3) uint8 -> optical density -log10((I + 1) / 256) per channel, float32."""
    return -np.log10((image.astype(np.float32) + 1.0) / 256.0)


def tissue_pixels(rgb: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose optical density reaches BACKGROUND_OD in some channel."""
    return ~(optical_density(rgb) < BACKGROUND_OD).all(axis=-1)


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
