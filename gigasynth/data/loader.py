"""Training batches: which slide each patch comes from, and loading in worker processes.

Batch `it` is a pure function of (seed, rank, it): its generator is seeded with those
three numbers, so any worker process can make any batch and a resumed run continues
with exactly the batches it would have seen. Sources are drawn in proportion to their
`area` (tissue area for slides) or equally. With dihedral augmentation each patch is
flipped and rotated by a multiple of 90 degrees, drawn from a generator keyed by the same
three numbers (and a stream of its own, so the patches themselves do not change).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from gigasynth.data.sources import PatchSource
from gigasynth.errors import GigasynthError

WEIGHTINGS = ("tissue", "equal")
AUGMENTATIONS = ("none", "dihedral")
_AUGMENT_STREAM = 0xD1


def source_weights(sources: Sequence[PatchSource], weighting: str = "tissue") -> np.ndarray:
    """Probability of drawing each source: by tissue (or image) area, or equal."""
    if weighting not in WEIGHTINGS:
        raise GigasynthError(
            f"slide weighting must be one of {', '.join(WEIGHTINGS)}, not {weighting!r}"
        )
    if not sources:
        raise GigasynthError("no data to train on")
    if weighting == "equal":
        weights = np.ones(len(sources))
    else:
        weights = np.array([float(s.area) for s in sources], dtype=np.float64)
    return weights / weights.sum()


def dihedral(patch: np.ndarray, k: int) -> np.ndarray:
    """Element k (0-7) of the dihedral group on an (H, W, C) patch: k % 4 quarter turns,
    then a left-right flip when k >= 4."""
    out = np.rot90(patch, k % 4, axes=(0, 1))
    return out[:, ::-1] if k >= 4 else out


class PatchBatches(torch.utils.data.Dataset):
    """Item `it`: the (batch, size, size, 3) uint8 patches of iteration `it`."""

    def __init__(
        self,
        sources: Sequence[PatchSource],
        weights: np.ndarray,
        seed: int,
        rank: int,
        batch: int,
        size: int,
        augment: str = "none",
    ) -> None:
        if augment not in AUGMENTATIONS:
            raise GigasynthError(
                f"augmentation must be one of {', '.join(AUGMENTATIONS)}, not {augment!r}"
            )
        self.sources = list(sources)
        self.weights = weights
        self.seed, self.rank, self.batch, self.size = seed, rank, batch, size
        self.augment = augment

    def __getitem__(self, it: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.rank, it])
        picks = rng.choice(len(self.sources), size=self.batch, p=self.weights)
        parts = [
            self.sources[i].sample(rng, int((picks == i).sum()), self.size)
            for i in range(len(self.sources))
            if (picks == i).any()
        ]
        patches = np.concatenate(parts)
        if self.augment == "dihedral":
            aug = np.random.default_rng([self.seed, self.rank, it, _AUGMENT_STREAM])
            ks = aug.integers(0, 8, len(patches))
            patches = np.stack([dihedral(p, int(k)) for p, k in zip(patches, ks, strict=True)])
        return torch.from_numpy(np.ascontiguousarray(patches))


def load_batches(
    batches: PatchBatches,
    start: int,
    stop: int,
    workers: int = 0,
) -> Iterator[torch.Tensor]:
    """Batches start..stop-1 in order, made ahead by `workers` processes (0: here)."""
    if workers < 0:
        raise GigasynthError(f"loader workers must be >= 0, not {workers}")
    loader = torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        sampler=range(start, stop),
        num_workers=workers,
        prefetch_factor=4 if workers else None,
        # fork starts fast and shares the sources; elsewhere spawn (sources are picklable).
        multiprocessing_context=("fork" if sys.platform == "linux" else "spawn")
        if workers
        else None,
    )
    yield from loader
