"""FID and KID between two sets of feature vectors.

FID's matrix square root is taken without forming a d x d product: with centred,
scaled features A (n_a x d) and B (n_b x d), Sigma_a = A^T A and Sigma_b = B^T B, the
non-zero eigenvalues of Sigma_a Sigma_b are the squared singular values of A B^T, so
tr sqrt(Sigma_a Sigma_b) is the nuclear norm of A B^T. Exact, and an SVD of an
n_a x n_b matrix instead of an ill-conditioned 2048 x 2048 sqrtm at small n.
"""

from __future__ import annotations

import numpy as np

from gigasynth.errors import GigasynthError


def _check(a: np.ndarray, b: np.ndarray, minimum: int) -> None:
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise GigasynthError(f"feature sets must be (n, d) with equal d, not {a.shape}, {b.shape}")
    if min(len(a), len(b)) < minimum:
        raise GigasynthError(f"need at least {minimum} samples per set, got {len(a)} and {len(b)}")


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a and b (FID on Inception)."""
    _check(a, b, 2)
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca = (a - mu_a) / np.sqrt(len(a) - 1)
    cb = (b - mu_b) / np.sqrt(len(b) - 1)
    cross = np.linalg.svd(ca @ cb.T, compute_uv=False).sum()
    value = ((mu_a - mu_b) ** 2).sum() + (ca**2).sum() + (cb**2).sum() - 2.0 * cross
    return float(max(value, 0.0))


def _polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 between the rows of a and b."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def _polynomial_mmd2(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3."""
    kaa, kbb, kab = _polynomial_kernel(a, a), _polynomial_kernel(b, b), _polynomial_kernel(a, b)
    m, n = len(a), len(b)
    term_a = (kaa.sum() - np.trace(kaa)) / (m * (m - 1))
    term_b = (kbb.sum() - np.trace(kbb)) / (n * (n - 1))
    return float(term_a + term_b - 2.0 * kab.mean())


def kernel_inception_distance(
    a: np.ndarray, b: np.ndarray, subset: int = 1000, subsets: int = 100, seed: int = 0
) -> float:
    """KID: unbiased polynomial-kernel MMD^2; averaged over random subsets when n > `subset`."""
    _check(a, b, 2)
    a, b = a.astype(np.float64), b.astype(np.float64)
    if max(len(a), len(b)) <= subset:
        return _polynomial_mmd2(a, b)
    rng = np.random.default_rng(seed)
    size = min(subset, len(a), len(b))
    values = [
        _polynomial_mmd2(
            a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)]
        )
        for _ in range(subsets)
    ]
    return float(np.mean(values))


def _within_mean(k: np.ndarray, idx: np.ndarray) -> float:
    """Mean of k over pairs of a resample whose original items differ (a U-statistic)."""
    distinct = idx[:, None] != idx[None, :]
    return float(k[np.ix_(idx, idx)][distinct].mean())


# Items per set the KID bootstrap needs: with two, most resamples hold one item twice.
KID_BOOTSTRAP_MIN = 3
KID_RESAMPLES = 500  # the bootstrap's resamples, unless asked otherwise
MIN_RESAMPLES = 10  # fewer give no percentile worth the name


def check_bootstrap(resamples: int, confidence: float) -> None:
    """One-line GigasynthError unless the bootstrap's settings can give an interval."""
    if resamples < MIN_RESAMPLES or not 0 < confidence < 1:
        raise GigasynthError(
            f"the KID bootstrap needs {MIN_RESAMPLES}+ resamples and 0 < confidence < 1, "
            f"not {resamples}, {confidence}"
        )


def _resample(rng: np.random.Generator, n: int) -> np.ndarray:
    """n indices drawn with replacement, redrawn until two distinct items are in it: a
    resample of one item repeated has no pair to average (at n = 4, 1.6 % of draws)."""
    while True:
        idx = rng.integers(0, n, n)
        if (idx != idx[0]).any():
            return idx


def _members(groups: np.ndarray) -> list[np.ndarray]:
    """The item indices of each block label, in label order."""
    return [np.flatnonzero(groups == g) for g in np.unique(groups)]


def _block_resample(rng: np.random.Generator, blocks: list[np.ndarray]) -> np.ndarray:
    """A block bootstrap resample: as many blocks as there are, drawn with replacement, all
    their items taken (redrawn until it holds two distinct items)."""
    while True:
        idx = np.concatenate([blocks[b] for b in rng.integers(0, len(blocks), len(blocks))])
        if (idx != idx[0]).any():
            return idx


def kid_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    resamples: int = KID_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
    groups_a: np.ndarray | None = None,
    groups_b: np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of KID, resampling both sets with replacement.

    Within a set, pairs of copies of one item are left out of the kernel mean (as the
    unbiased estimate leaves out the diagonal), so duplicates of a resample do not
    inflate the self-similarity terms. `groups_a` / `groups_b` label each item's block
    (crops that overlap or lie close share one): whole blocks are then resampled, not
    items, so overlapping crops do not count as independent evidence and the interval
    widens to what the disjoint area supports (a spatial block bootstrap).
    """
    _check(a, b, KID_BOOTSTRAP_MIN)
    check_bootstrap(resamples, confidence)
    for items, groups in ((a, groups_a), (b, groups_b)):
        if groups is not None and groups.shape != (len(items),):
            raise GigasynthError(f"block labels {groups.shape} do not match {len(items)} items")
    blocks_a = _members(groups_a) if groups_a is not None else None
    blocks_b = _members(groups_b) if groups_b is not None else None
    a, b = a.astype(np.float64), b.astype(np.float64)
    kaa, kbb, kab = _polynomial_kernel(a, a), _polynomial_kernel(b, b), _polynomial_kernel(a, b)
    rng = np.random.default_rng(seed)
    values = np.empty(resamples)
    for r in range(resamples):
        ia = _block_resample(rng, blocks_a) if blocks_a else _resample(rng, len(a))
        ib = _block_resample(rng, blocks_b) if blocks_b else _resample(rng, len(b))
        values[r] = (
            _within_mean(kaa, ia) + _within_mean(kbb, ib) - 2.0 * float(kab[np.ix_(ia, ib)].mean())
        )
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)
