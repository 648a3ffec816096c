"""Why a super-resolution stage draws grain on glass: its noise prediction per t.

    python experiments/glass_probe.py --checkpoint builtin:skin-sr4 RUN/checkpoint

On a window of the val region at the stage's µm/px (the first 192 x 1024 px), each t:
noise the real crop to x_t, predict the noise with the stage (its training condition from
the same crop), and report the mean squared error against the true noise on glass 20 µm or
more from tissue and on tissue (0: perfect; 1: no better than predicting zero), with the
weight the checkpoint's own training gave that t relative to t = T (min-SNR weighting:
min(SNR, gamma) / SNR; 1 everywhere without it). Writes docs/results/glass-probe.json.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import SLIDE, save_results

from gigasynth.checkpoint import load_checkpoint
from gigasynth.data.sources import SlideRegions
from gigasynth.diffusion.schedule import NoiseSchedule
from gigasynth.eval.histology import far_glass, tissue_pixels
from gigasynth.images import to_model_space
from gigasynth.sampling.condition import training_condition

TIMES = (1, 3, 10, 30, 100, 200, 299)


def probe(reference: str, image: np.ndarray, mpp: float) -> dict:
    checkpoint = load_checkpoint(reference)
    model, config = checkpoint.model.eval(), checkpoint.config
    train = checkpoint.meta.get("train", {})
    x0 = to_model_space(image)
    glass = torch.from_numpy(far_glass(image, mpp))[None, None].expand_as(x0)
    tissue = torch.from_numpy(tissue_pixels(image))[None, None].expand_as(x0)
    condition = training_condition(config, x0, [0])
    schedule = NoiseSchedule.for_config(config)
    snr = schedule.snr(list(TIMES))
    gamma = float(train.get("min_snr_gamma", 5.0))
    min_snr = train.get("loss_weighting") == "min-snr"
    weight = snr.clamp(max=gamma) / snr if min_snr else torch.ones_like(snr)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for k, t in enumerate(TIMES):
        noise = torch.randn(x0.shape, generator=generator)
        a = schedule.alpha_bar(t)
        x_t = a**0.5 * x0 + (1 - a) ** 0.5 * noise
        with torch.no_grad():
            error = (model(x_t, [t], [1], condition=condition) - noise) ** 2
        rows.append(
            {
                "t": t,
                "mse_glass": float(error[glass].mean()),
                "mse_tissue": float(error[tissue].mean()),
                "loss_weight": float(weight[k] / weight[-1]),
            }
        )
    return {
        "checkpoint": reference,
        "sha256": checkpoint.sha256,
        "step": checkpoint.meta.get("step"),
        "loss_weighting": train.get("loss_weighting"),
        "rows": rows,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", nargs="+", required=True)
    args = p.parse_args()
    torch.manual_seed(0)
    regions = SlideRegions(SLIDE, 2.0, "val")
    assert regions.level0_mpp is not None
    image = np.array(regions.read(0, 0, 192, 1024))
    record = {
        "region": "val",
        "window_px": [1024, 192],
        "mpp": regions.level0_mpp * 2.0,
        "models": [probe(c, image, regions.level0_mpp * 2.0) for c in args.checkpoint],
    }
    print(save_results("glass-probe", record))


if __name__ == "__main__":
    main()
