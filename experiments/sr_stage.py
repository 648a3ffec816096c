"""A conditioned stage on the held-out region: band ratios and background.

A mask stage is given the region's tissue mask at its input resolution (by the threshold
its training recorded) instead of the low-resolution image.

Reads the slide's test region at `--downsample` (the stage's grid), area-downsamples it by
the stage's factor, samples the stage from that low-resolution copy (whole image, DDIM),
and compares the result with the real region: luminance energy per octave band
(gigasynth.eval.slide.band_energies, synthetic / real) and the near-white background
fraction. The plain bilinear upsampling of the same low-resolution copy is measured too,
as the reference for what the stage adds.

    python experiments/sr_stage.py --checkpoint RUN/checkpoint \
        --slide data/cmu_small_region.svs --downsample 2 --out OUT
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from gigasynth.checkpoint import load_checkpoint
from gigasynth.data.sources import SlideRegions
from gigasynth.eval.slide import _ColourSums, area_downsample, band_count, band_energies
from gigasynth.images import to_model_space, to_uint8, write_png
from gigasynth.sampling import SampleRequest, super_resolve
from gigasynth.sampling.condition import crop_tissue, upsample_bilinear


def _figures(real: np.ndarray, image: np.ndarray, bands: int, mpp: float) -> dict:
    sums = _ColourSums()
    sums.add(image, mpp)
    ratio = band_energies(image, bands) / band_energies(real, bands)
    return {
        "band_ratios": [round(float(r), 3) for r in ratio],
        "background": round(sums.stats().background_fraction, 4),
        "glass_std": sums.stats().glass_std,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--slide", type=Path, required=True)
    p.add_argument("--region", default="test")
    p.add_argument("--downsample", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    ckpt = load_checkpoint(args.checkpoint)
    f = ckpt.config.condition_downsample
    regions = SlideRegions(args.slide, args.downsample, args.region)
    h, w = regions.height // f * f, regions.width // f * f
    real = np.asarray(regions.read(0, 0, h, w))
    low = to_model_space(area_downsample(real, f))
    if ckpt.config.condition_kind == "mask":  # a mask stage: the region's tissue mask
        low = crop_tissue(low, float(ckpt.meta["tissue_threshold"]))
    t0 = time.perf_counter()
    fake = to_uint8(super_resolve(ckpt.model, low, [args.seed], SampleRequest("ddim", args.steps)))[
        0
    ]
    seconds = time.perf_counter() - t0
    bilinear = to_uint8(upsample_bilinear(low, f, h, w).expand(-1, 3, -1, -1))[0]
    args.out.mkdir(parents=True, exist_ok=True)
    for name, image in (
        ("real", real),
        ("stage", fake),
        ("bilinear", bilinear),
        ("low", area_downsample(real, f)),
    ):
        write_png(args.out / f"{name}.png", image)
    bands = band_count(min(h, w))
    if regions.level0_mpp is None:
        raise SystemExit(f"{args.slide} states no pixel size: glass noise needs one")
    mpp = regions.level0_mpp * args.downsample
    real_sums = _ColourSums()
    real_sums.add(real, mpp)
    report = {
        "checkpoint": args.checkpoint,
        "sha256": ckpt.sha256,
        "step": ckpt.meta.get("step"),
        "size": [w, h],
        "downsample": args.downsample,
        "factor": f,
        "bands_px": [[2**k, 2 ** (k + 1)] for k in range(bands)],
        "real_background": round(real_sums.stats().background_fraction, 4),
        "real_glass_std": real_sums.stats().glass_std,
        "stage": _figures(real, fake, bands, mpp),
        "bilinear": _figures(real, bilinear, bands, mpp),
        "sampling_seconds": round(seconds, 1),
        "ddim_steps": args.steps,
        "threads": torch.get_num_threads(),
    }
    (args.out / "figures.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
