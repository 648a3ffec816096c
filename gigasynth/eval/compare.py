"""Distribution metrics between a reference set and a generated set: FID, KID, SWD."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gigasynth.errors import GigasynthError
from gigasynth.eval.feature_distances import (
    KID_BOOTSTRAP_MIN,
    frechet_distance,
    kernel_inception_distance,
    kid_bootstrap,
)
from gigasynth.eval.inception import inception_features
from gigasynth.eval.swd import sliced_wasserstein_distance

METRICS = ("fid", "kid", "swd")


def compare_sets(
    real: np.ndarray,
    fake: np.ndarray,
    metrics: tuple[str, ...] = METRICS,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics between two (N, H, W, 3) uint8 sets, truncated to the same N.

    Returns {"n": N, "fid": ..., "kid": ..., "kid_interval": [low, high], "swd": ...,
    "swd_levels": [...]} for the metrics asked for; the KID interval is a 95 % percentile
    bootstrap over both sets (`kid_bootstrap`), so a figure at small n carries its spread.
    """
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown or not metrics:
        raise GigasynthError(f"unknown metrics {unknown} (choose from {', '.join(METRICS)})")
    n = min(len(real), len(fake))
    if n < 2:
        raise GigasynthError(f"need at least 2 images per set, got {len(real)} and {len(fake)}")
    real, fake = real[:n], fake[:n]
    result: dict[str, Any] = {"n": n}
    if "fid" in metrics or "kid" in metrics:
        feats_real = inception_features(real, device)
        feats_fake = inception_features(fake, device)
        if "fid" in metrics:
            result["fid"] = frechet_distance(feats_real, feats_fake)
        if "kid" in metrics:
            result["kid"] = kernel_inception_distance(feats_real, feats_fake, seed=seed)
            if n >= KID_BOOTSTRAP_MIN:
                result["kid_interval"] = list(kid_bootstrap(feats_real, feats_fake, seed=seed))
    if "swd" in metrics:
        result["swd"], result["swd_levels"] = sliced_wasserstein_distance(real, fake, seed=seed)
    return result


def format_metrics(result: dict[str, Any]) -> list[str]:
    """One line per metric, each with its sample count: 'FID 12.3 (n=150)'."""
    n = result["n"]
    lines = []
    if "fid" in result:
        lines.append(f"FID {result['fid']:.2f} (n={n})")
    if "kid" in result:
        interval = result.get("kid_interval")
        spread = f" [95 % CI {interval[0]:.4f}, {interval[1]:.4f}]" if interval else ""
        lines.append(f"KID {result['kid']:.4f}{spread} (n={n})")
    if "swd" in result:
        lines.append(f"SWD {result['swd']:.1f} (n={n})")
    return lines
