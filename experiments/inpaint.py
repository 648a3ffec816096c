"""Inpainting of held-out images: PSNR and SSIM inside the hole, against a harmonic fill.

The hole is a centred square; every model fills it with gigasynth.sampling.inpaint
(known pixels re-noised to each step's t). The baseline fills it with the harmonic
(Laplace) interpolation of the hole's border, a smooth guess from the surrounding pixels.

    nice -n 15 python experiments/inpaint.py --task faces --n 16 --hole 24 --steps 25

Writes docs/figures/inpaint-TASK.png and docs/results/inpaint-TASK.json.
"""

from __future__ import annotations

import numpy as np
import torch
from common import (
    experiment_parser,
    load_model,
    parse_experiment,
    reference_images,
    save_grid,
    save_results,
    training_budget,
)

from gigasynth.eval import psnr, ssim
from gigasynth.images import to_model_space, to_uint8
from gigasynth.sampling import SampleRequest, inpaint


def harmonic_fill(images: np.ndarray, hole: np.ndarray, iterations: int = 2000) -> np.ndarray:
    """Fill hole pixels (hole == 1) by Jacobi iterations of Laplace's equation."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).double()
    m = torch.from_numpy(hole).double()[None, None]
    known = x.clone()
    x = x * (1 - m) + m * (x * (1 - m)).sum(dim=(2, 3), keepdim=True) / (1 - m).sum()
    kernel = torch.tensor(
        [[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]], dtype=torch.float64
    ).expand(3, 1, 3, 3)
    for _ in range(iterations):
        avg = torch.nn.functional.conv2d(
            torch.nn.functional.pad(x, (1, 1, 1, 1), "replicate"), kernel, groups=3
        )
        x = known * (1 - m) + avg * m
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def main() -> None:
    parser = experiment_parser(__doc__)
    parser.add_argument("--n", type=int, default=16, help="held-out images")
    parser.add_argument("--hole", type=int, default=24, help="side of the centred square hole")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps")
    args, task, labels = parse_experiment(parser)
    truth = reference_images(task, args.n)
    hole = np.zeros((task.size, task.size))
    lo = (task.size - args.hole) // 2
    hole[lo : lo + args.hole, lo : lo + args.hole] = 1
    known = torch.from_numpy(1 - hole).float()[None, None]
    masked = truth.copy()
    masked[:, hole == 1] = 128
    request = SampleRequest("ddim", args.steps)
    seeds = list(range(2_000_000, 2_000_000 + args.n))
    fills = {"harmonic fill": harmonic_fill(truth, hole)}
    record = {
        "task": task.name,
        "n": args.n,
        "hole_px": args.hole,
        "steps": args.steps,
        "metric_region": "inside the hole",
        "results": {},
        "train": {},
    }
    for label in labels:
        model = load_model(task.name, label, args.device)
        record["train"][label] = training_budget(task, label)
        with torch.no_grad():
            out = inpaint(
                model, to_model_space(truth).to(args.device), known.to(args.device), seeds, request
            )
        fills[label] = to_uint8(out)
    for label, images in fills.items():
        record["results"][label] = {
            "psnr_db": psnr(truth, images, hole[None]),
            "ssim": ssim(truth, images, hole[None]),
        }
        print(
            f"{task.name} inpaint {label}: PSNR {record['results'][label]['psnr_db']:.2f} dB "
            f"SSIM {record['results'][label]['ssim']:.3f} (n={args.n})",
            flush=True,
        )
    columns = min(8, args.n)
    rows = [truth[:columns], masked[:columns], *(images[:columns] for images in fills.values())]
    save_grid(np.concatenate(rows), f"inpaint-{task.name}.png", columns=columns)
    record["grid_rows"] = ["truth", "masked", *fills]
    save_results(f"inpaint-{task.name}", record)


if __name__ == "__main__":
    main()
