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


def _polynomial_mmd2(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3."""
    d = a.shape[1]
    kaa = (a @ a.T / d + 1.0) ** 3
    kbb = (b @ b.T / d + 1.0) ** 3
    kab = (a @ b.T / d + 1.0) ** 3
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
        _polynomial_mmd2(a[rng.choice(len(a), size, replace=False)],
                         b[rng.choice(len(b), size, replace=False)])
        for _ in range(subsets)
    ]
    return float(np.mean(values))
