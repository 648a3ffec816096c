"""What a denoiser has learned: its gain over a linear filter, and the reach it uses, per t.

Two diagnostics of a trained model (an NCA or the UNet), on held-out tissue:

- gain over a linear filter: at each probed noise level t, the model's noise-prediction
  error against that of the best linear estimator of the noise from a --window x --window
  neighbourhood of x_t (least squares, fitted on train-region crops, scored on
  test-region crops; a Wiener filter). A denoiser that is barely better than this filter
  has learned little beyond second-order statistics: it cannot draw structure.
- reach used: the gradient of the predicted noise at a crop's centre pixel with respect
  to x_t; the radius (Chebyshev, px) holding 90 % of its absolute mass. A Diff-NCA can
  reach as far as its NCA steps; one that uses a fraction of that decides everything from
  a few pixels.

    python experiments/denoiser_probe.py --checkpoint builtin:tiny-pathology \\
        --json docs/results/probe-tiny-pathology.json

Crops come from the sample slide at the model's pixel size (its checkpoint's `mpp`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from common import SLIDE

from gigasynth.baselines import load_denoiser
from gigasynth.checkpoint import read_document
from gigasynth.data import open_source
from gigasynth.diffusion.schedule import NoiseSchedule
from gigasynth.images import to_model_space

REACH_MASS = 0.9


def crops(region: str, downsample: float, count: int, size: int, seed: int) -> torch.Tensor:
    """Tissue crops of the sample slide's region, in model space (B, 3, size, size)."""
    source = open_source(SLIDE, downsample, region=region)
    return to_model_space(source.sample(np.random.default_rng(seed), count, size))


def noisy(
    schedule: NoiseSchedule, x0: torch.Tensor, t: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    return schedule.add_noise(x0, eps, t), eps


def neighbourhoods(x: torch.Tensor, window: int) -> torch.Tensor:
    """(pixels, 3 * window^2 + 1): each interior pixel's neighbourhood and a bias."""
    cols = F.unfold(x, window)  # (B, 3 * w^2, L)
    rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return torch.cat([rows, torch.ones(rows.shape[0], 1)], dim=1).double()


def interior(x: torch.Tensor, window: int) -> torch.Tensor:
    """(pixels, 3) of the pixels whose whole window lies inside the crop."""
    r = window // 2
    inner = x[:, :, r : x.shape[2] - r, r : x.shape[3] - r]
    return inner.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).double()


def predict(model: Any, x_t: torch.Tensor, t: int, batch: int = 16) -> torch.Tensor:
    parts = []
    with torch.no_grad():
        for i in range(0, len(x_t), batch):
            chunk = x_t[i : i + batch]
            seeds = list(range(i, i + len(chunk)))
            parts.append(model(chunk, [t] * len(chunk), seeds).float())
    return torch.cat(parts)


def reach_used(model: Any, x_t: torch.Tensor, t: int) -> float:
    """Mean over crops of the radius holding REACH_MASS of |d eps_hat(centre) / d x_t|."""
    radii = []
    for i in range(len(x_t)):
        x = x_t[i : i + 1].clone().requires_grad_(True)
        eps_hat = model(x, [t], [i])
        h, w = x.shape[2:]
        eps_hat[0, :, h // 2, w // 2].sum().backward()
        mass = x.grad[0].abs().sum(0)  # (H, W)
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        dist = torch.maximum((ys - h // 2).abs(), (xs - w // 2).abs())
        per_radius = torch.bincount(dist.flatten(), weights=mass.flatten().double())
        cumulative = per_radius.cumsum(0) / per_radius.sum()
        radii.append(int((cumulative < REACH_MASS).sum()))
    return float(np.mean(radii))


def probe(
    ref: str, steps: list[int], count: int, size: int, window: int, reach_crops: int
) -> dict[str, Any]:
    model = load_denoiser(ref, "cpu").eval()
    config = model.config
    meta = read_document(ref)["meta"]
    level0_mpp = open_source(SLIDE).mpp  # the slide's own pixel size, at downsample 1
    downsample = float(meta.get("mpp", level0_mpp)) / level0_mpp
    schedule = NoiseSchedule.for_config(config)
    fit_x0 = crops("train", downsample, count, size, seed=1)
    test_x0 = crops("test", downsample, count, size, seed=2)
    rows = []
    for t in steps:
        if not 0 <= t < config.timesteps:
            raise SystemExit(f"t={t} is outside the model's 0..{config.timesteps - 1}")
        fit_xt, fit_eps = noisy(schedule, fit_x0, t, seed=10 + t)
        test_xt, test_eps = noisy(schedule, test_x0, t, seed=20 + t)
        solution = torch.linalg.lstsq(
            neighbourhoods(fit_xt, window), interior(fit_eps, window)
        ).solution
        linear_hat = neighbourhoods(test_xt, window) @ solution
        target = interior(test_eps, window)
        linear_mse = float(((linear_hat - target) ** 2).mean())
        model_mse = float(((interior(predict(model, test_xt, t), window) - target) ** 2).mean())
        row = {
            "t": t,
            "alpha_bar": schedule.alpha_bar(t),
            "model_mse": model_mse,
            "linear_mse": linear_mse,
            "gain": 1.0 - model_mse / linear_mse,
            "reach_used_px": reach_used(model, test_xt[:reach_crops], t),
        }
        rows.append(row)
        print(
            f"t={t:4d}  model {model_mse:.4f}  linear {linear_mse:.4f}  "
            f"gain {row['gain']:+.1%}  reach used {row['reach_used_px']:.1f} px",
            flush=True,
        )
    return {
        "checkpoint": ref,
        "kind": config.kind,
        "reach_px": config.halo if config.is_tileable else None,
        "downsample": downsample,
        "crops": count,
        "size": size,
        "window": window,
        "reach_mass": REACH_MASS,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint folder or builtin:NAME")
    parser.add_argument("--t", type=int, nargs="+", default=[10, 50, 100, 150, 200, 250, 290])
    parser.add_argument("--n", type=int, default=48, help="crops for the fit and for the score")
    parser.add_argument("--size", type=int, default=48, help="crop side in px")
    parser.add_argument("--window", type=int, default=9, help="the linear filter's side")
    parser.add_argument("--reach-crops", type=int, default=8)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = probe(args.checkpoint, args.t, args.n, args.size, args.window, args.reach_crops)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
