"""A synthetic twin of the held-out test region (a cascade drawn from its thumbnail).

The test region's thumbnail (read at the resolution the cascade's first image stage
takes, 4 µm/px for builtin:skin) is given as `--layout`; the cascade draws the region at
its finest resolution. Two figures:

- outline: the tissue mask of the output, area-downsampled to the thumbnail's grid,
  against the thumbnail's own tissue mask (gigasynth.data.tissue, each image its own Otsu
  threshold): IoU, beside the same IoU of the thumbnail upsampled bilinearly (what a
  twin must beat: the layout alone already gives that outline);
- new detail: on tissue crops, the detail a stage adds (the crop minus its own 4x
  area-downsampled, bilinearly upsampled copy) of each synthetic crop against the real
  slide's detail at every crop position of the region (stride 4 px), nearest neighbour by
  RMS; the same for each real crop against the real crops that do not overlap it. The
  detail is new when no synthetic crop is closer to a real crop than the closest real
  pair (min synthetic distance > min real distance); medians are reported too.

    python experiments/twin_check.py --slide data/cmu_small_region.svs \
        --cascade builtin:skin --out runs/twin
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gigasynth.cascade import load_cascade
from gigasynth.cascade.layout import read_layout
from gigasynth.cascade.synth import CascadeSettings, synthesize_cascade
from gigasynth.data.regions import resolve_region
from gigasynth.data.tissue import tissue_mask
from gigasynth.io import open_level


def _region_rgb(slide_path: Path, region: str, mpp: float) -> np.ndarray:
    """The slide's region read at `mpp` µm/px (the whole slide read, then cropped)."""
    import openslide

    with openslide.OpenSlide(str(slide_path)) as slide:
        level0 = float(slide.properties["openslide.mpp-x"])
        width, height = slide.dimensions
    r = resolve_region(region, width, height, level0)
    whole = read_layout(slide_path, mpp)
    f = mpp / level0
    y0, y1 = round(r.y0 / f), round(r.y1 / f)
    x0, x1 = round(r.x0 / f), round(r.x1 / f)
    return whole[y0:y1, x0:x1]


def _detail(rgb: np.ndarray, factor: int = 4) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H', W') float: the image minus its low-pass copy (H' the
    largest multiple of factor)."""
    h, w = (rgb.shape[0] // factor) * factor, (rgb.shape[1] // factor) * factor
    x = torch.from_numpy(rgb[:h, :w]).permute(2, 0, 1)[None].float() / 255.0
    low = F.interpolate(F.avg_pool2d(x, factor), scale_factor=factor, mode="bilinear")
    return (x - low)[0]


def _crops(x: torch.Tensor, size: int, stride: int) -> tuple[torch.Tensor, np.ndarray]:
    """All size x size crops at `stride` as (N, 3*size*size) and their (y, x) corners."""
    patches = F.unfold(x[None], size, stride=stride)[0].T
    rows = (x.shape[1] - size) // stride + 1
    cols = (x.shape[2] - size) // stride + 1
    ys, xs = np.divmod(np.arange(rows * cols), cols)
    return patches, np.stack([ys * stride, xs * stride], 1)


def _tissue_crops(rgb: np.ndarray, corners: np.ndarray, size: int) -> np.ndarray:
    mask = tissue_mask(rgb)
    return np.array([mask[y : y + size, x : x + size].mean() > 0.5 for y, x in corners])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide", type=Path, required=True)
    parser.add_argument("--cascade", default="builtin:skin")
    parser.add_argument("--region", default="test")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crop", type=int, default=32)
    parser.add_argument("--samples", type=int, default=200, help="synthetic crops compared")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cascade = load_cascade(args.cascade)
    thumb_mpp = cascade.entry_mpp("image")
    thumb = _region_rgb(args.slide, args.region, thumb_mpp)
    layout = args.out / "thumbnail.png"
    Image.fromarray(thumb).save(layout)
    zarr = args.out / "twin.ome.zarr"
    result = synthesize_cascade(
        cascade,
        layout,
        zarr,
        CascadeSettings(seed=args.seed, tile=512),
        preview=args.out / "twin.png",
        workers=2,
        overwrite=True,
    )
    fake = np.asarray(open_level(zarr, 0, mode="r")[:]).transpose(1, 2, 0)
    factor = cascade.entry_factor("image")
    down = F.avg_pool2d(torch.from_numpy(fake).permute(2, 0, 1)[None].float(), factor)
    fake_thumb = down[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
    a, b = tissue_mask(fake_thumb), tissue_mask(thumb)
    iou = float((a & b).sum() / max(1, (a | b).sum()))
    # The baseline a twin must beat: the thumbnail upsampled bilinearly to the output's
    # size, through the same downsampling and tissue mask.
    up = F.interpolate(
        torch.from_numpy(thumb).permute(2, 0, 1)[None].float(),
        size=fake.shape[:2],
        mode="bilinear",
        align_corners=False,
    )
    base = F.avg_pool2d(up, factor)[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
    c = tissue_mask(base)
    baseline_iou = float((c & b).sum() / max(1, (c | b).sum()))

    real = _region_rgb(args.slide, args.region, cascade.mpp)[: fake.shape[0], : fake.shape[1]]
    size, stride = args.crop, 4
    real_d, real_at = _crops(_detail(real), size, stride)
    fake_d, fake_at = _crops(_detail(fake), size, size)
    real_tissue = _tissue_crops(real, real_at, size)
    fake_tissue = _tissue_crops(fake, fake_at, size)
    rng = np.random.default_rng(args.seed)
    pick = rng.permutation(np.flatnonzero(fake_tissue))[: args.samples]
    bank = real_d[real_tissue]
    bank_at = real_at[real_tissue]
    dim = bank.shape[1]
    fake_nn = torch.cdist(fake_d[pick], bank).min(dim=1).values / dim**0.5
    own = rng.permutation(len(bank))[: args.samples]
    dist = torch.cdist(bank[own], bank) / dim**0.5
    overlap = (np.abs(bank_at[own][:, None, :] - bank_at[None, :, :]) < size).all(-1)
    dist[torch.from_numpy(overlap)] = float("inf")
    real_nn = dist.min(dim=1).values
    report = {
        "cascade": args.cascade,
        "region": args.region,
        "thumbnail_px": list(thumb.shape[1::-1]),
        "thumbnail_mpp": thumb_mpp,
        "output_px": list(fake.shape[1::-1]),
        "output_mpp": cascade.mpp,
        "seconds": result.seconds,
        "tissue_iou": iou,
        "bilinear_tissue_iou": baseline_iou,
        "tissue_fraction": {"output": float(a.mean()), "thumbnail": float(b.mean())},
        "crop": size,
        "detail_nn_rms": {
            "synthetic_to_real": {
                "n": len(pick),
                "min": float(fake_nn.min()),
                "median": float(fake_nn.median()),
            },
            "real_to_real": {
                "n": len(own),
                "min": float(real_nn.min()),
                "median": float(real_nn.median()),
            },
        },
        "new_detail": bool(fake_nn.min() > real_nn.min()),
    }
    (args.out / "twin.json").write_text(json.dumps(report, indent=2))
    side = np.concatenate([real[: fake.shape[0]], fake], axis=1)
    Image.fromarray(side).save(args.out / "real-vs-twin.png")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
