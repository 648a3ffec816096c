"""Copy check: is a synthetic field made of copies of the tissue its model trained on?

Held-out figures cannot show copying: a model that reproduced its training region would
look as new against the test region as one that draws new tissue. So each synthetic tissue
crop is compared with **every** tissue crop position of the training region (stride 1 px,
by FFT cross-correlation), and that nearest-neighbour distance is set against the training
region's own: each of a sample of training crops to its nearest training crop that does not
overlap it. A field drawn anew from the training tissue's distribution sits about as close
to the training region as the region's parts sit to each other; a copier sits far closer.

Distances compare the crops' *detail* (a crop less its 4x area-averaged, bilinearly
upsampled copy): what a stage draws, not the colours or layout a condition hands it. The
distance is relative, |a - b|^2 / (|a|^2 + |b|^2) square-rooted: 0 for the same detail, about
1 for unrelated detail, so faint (smooth stroma) and strong (nuclei) detail compare alike.
Crops are tissue crops: at least half their pixels tissue by
`gigasynth.data.tissue.tissue_mask` (glass is alike everywhere and would look copied).

`copied_share` is the share of synthetic crops closer to the training region than the 5th
percentile of the internal distances; a field like the training tissue has about 0.05. The
check flags a field when the share exceeds COPIED_SHARE_LIMIT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from gigasynth.data.tissue import tissue_mask
from gigasynth.errors import GigasynthError

DETAIL_FACTOR = 4
TISSUE_SHARE = 0.5  # of a crop's pixels, for a tissue crop
INTERNAL_QUANTILE = 5.0  # percentile of the internal distances a copy falls under
COPIED_SHARE_LIMIT = 0.25  # five times what a field like the training tissue shows


@dataclass(frozen=True)
class Distances:
    """Nearest-neighbour distances of one set of crops: how many, and their quantiles."""

    n: int
    minimum: float
    p05: float
    median: float

    @classmethod
    def of(cls, values: np.ndarray) -> Distances:
        return cls(
            len(values),
            float(values.min()),
            float(np.percentile(values, 5)),
            float(np.median(values)),
        )


@dataclass(frozen=True)
class CopyCheck:
    """Synthetic crops' distances to the training region against the region's own."""

    crop: int
    synthetic: Distances
    internal: Distances
    copied_share: float
    flagged: bool

    def line(self) -> str:
        verdict = "COPIES the training region" if self.flagged else "no copying found"
        return (
            f"copy check ({self.crop} px tissue crops, relative detail distance): synthetic "
            f"to train median {self.synthetic.median:.4f} (min {self.synthetic.minimum:.4f}, "
            f"n={self.synthetic.n}), train to train median {self.internal.median:.4f} "
            f"(5th percentile "
            f"{self.internal.p05:.4f}, n={self.internal.n}); {self.copied_share:.0%} of "
            f"synthetic crops under that percentile: {verdict}"
        )


def detail(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H', W') float32: the image less its low-pass copy (H', W' the
    largest multiples of DETAIL_FACTOR)."""
    f = DETAIL_FACTOR
    h, w = (rgb.shape[0] // f) * f, (rgb.shape[1] // f) * f
    x = torch.tensor(rgb[:h, :w], dtype=torch.float32).permute(2, 0, 1)[None]
    x = x / 255.0
    low = F.interpolate(F.avg_pool2d(x, f), scale_factor=f, mode="bilinear")
    return (x - low)[0]


def _tissue_positions(rgb: np.ndarray, size: int, shape: tuple[int, int]) -> np.ndarray:
    """(rows, cols) bool: which crop corners of the detail image start a tissue crop."""
    mask = torch.from_numpy(tissue_mask(rgb)[: shape[0], : shape[1]].astype(np.float64))
    share = F.avg_pool2d(mask[None, None], size, stride=1)[0, 0]
    return share.numpy() >= TISSUE_SHARE


class _Bank:
    """Every crop position of a detail image, for exact nearest neighbours by FFT."""

    def __init__(self, image: torch.Tensor, size: int) -> None:
        self.size = size
        self.shape = tuple(image.shape[1:])
        self.spectrum = torch.fft.rfft2(image)
        squares = (image.double() ** 2).sum(0)[None, None]
        self.energy = (F.avg_pool2d(squares, size, stride=1)[0, 0] * size * size).float()

    def distances(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, rows, cols): the relative distance of each crop (B, 3, size, size) to the crop
        at every corner, |a - b|^2 / (|a|^2 + |b|^2) square-rooted (0: the same detail, 1:
        unrelated detail of any strength), so faint and strong detail compare alike."""
        kernel = torch.zeros(len(crops), 3, *self.shape, dtype=crops.dtype)
        kernel[:, :, : self.size, : self.size] = crops
        product = (self.spectrum[None] * torch.fft.rfft2(kernel).conj()).sum(1)
        corr = torch.fft.irfft2(product, s=self.shape)
        rows, cols = self.energy.shape
        own = (crops**2).sum((1, 2, 3))[:, None, None]
        total = own + self.energy[None]
        squared = (total - 2.0 * corr[:, :rows, :cols]).clamp(min=0.0)
        return (squared / total.clamp(min=1e-12)).sqrt()


BATCH = 16  # crops per FFT batch


def _sample(allowed: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    corners = np.argwhere(allowed)
    return corners[rng.permutation(len(corners))[:count]]


def copy_check(
    train: np.ndarray,
    fields: Sequence[np.ndarray],
    crop: int = 32,
    samples: int = 200,
    seed: int = 0,
) -> CopyCheck:
    """Nearest-neighbour distances of up to `samples` synthetic tissue crops (spread over
    the fields) to the training region `train` ((H, W, 3) uint8 at the fields' µm/px),
    against `samples` training crops' distances to their nearest non-overlapping neighbour."""
    if crop < 8 or crop % DETAIL_FACTOR:
        raise GigasynthError(f"copy check crop must be a multiple of 4 of at least 8, not {crop}")
    if not fields:
        raise GigasynthError("copy check: no synthetic field")
    rng = np.random.default_rng(seed)
    train_detail = detail(train)
    bank = _Bank(train_detail, crop)
    train_ok = _tissue_positions(train, crop, (train_detail.shape[1], train_detail.shape[2]))
    if train_ok.sum() < 2:
        raise GigasynthError("copy check: the training region holds too few tissue crops")
    rows, cols = bank.energy.shape
    train_ok = train_ok[:rows, :cols]
    blocked = torch.from_numpy(~train_ok)

    synthetic: list[float] = []
    per_field = -(-samples // len(fields))
    for field in fields:
        field_detail = detail(field)
        ok = _tissue_positions(field, crop, (field_detail.shape[1], field_detail.shape[2]))
        ok = ok[: field_detail.shape[1] - crop + 1, : field_detail.shape[2] - crop + 1]
        corners = _sample(ok, per_field, rng)
        for start in range(0, len(corners), BATCH):
            batch = corners[start : start + BATCH]
            crops = torch.stack([field_detail[:, y : y + crop, x : x + crop] for y, x in batch])
            d = bank.distances(crops).masked_fill(blocked[None], np.inf)
            synthetic += d.flatten(1).min(1).values.tolist()
    if len(synthetic) < 3:
        raise GigasynthError("copy check: the synthetic fields hold fewer than 3 tissue crops")

    internal: list[float] = []
    corners = _sample(train_ok, samples, rng)
    for start in range(0, len(corners), BATCH):
        batch = corners[start : start + BATCH]
        crops = torch.stack([train_detail[:, y : y + crop, x : x + crop] for y, x in batch])
        d = bank.distances(crops).masked_fill(blocked[None], np.inf)
        for k, (y, x) in enumerate(batch):  # leave out the crops that overlap it
            d[k, max(0, y - crop + 1) : y + crop, max(0, x - crop + 1) : x + crop] = np.inf
        nearest = d.flatten(1).min(1).values
        internal += nearest[torch.isfinite(nearest)].tolist()
    if len(internal) < 3:
        raise GigasynthError("copy check: the training region's tissue crops all overlap")
    near = np.array(synthetic)
    own = np.array(internal)
    share = float((near < np.percentile(own, INTERNAL_QUANTILE)).mean())
    return CopyCheck(crop, Distances.of(near), Distances.of(own), share, share > COPIED_SHARE_LIMIT)
