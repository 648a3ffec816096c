"""Super-resolution x2 and x4 of held-out images: the models against bicubic (PSNR, SSIM).

Each held-out truth (the task's size) is area-downsampled by the factor; bicubic upsampling is the
baseline and also the models' starting point (gigasynth.sampling.upscale noises it to
step T/10 and denoises from there).

    nice -n 15 python experiments/superres.py --task pathology --n 16 --factors 2 4

Writes docs/figures/superres-TASK-xF.png and docs/results/superres-TASK.json.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
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
from gigasynth.sampling import SampleRequest, upscale


def main() -> None:
    parser = experiment_parser(__doc__)
    parser.add_argument("--n", type=int, default=16, help="held-out images")
    parser.add_argument("--factors", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--t-start", type=int, help="noise level to start from (default T/10)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (at most t-start+1)")
    args, task, labels = parse_experiment(parser)
    truth = reference_images(task, args.n)
    x = to_model_space(truth)
    seeds = list(range(3_000_000, 3_000_000 + args.n))
    models = {label: load_model(task.name, label, args.device) for label in labels}
    record = {
        "task": task.name,
        "n": args.n,
        "steps": args.steps,
        "t_start": args.t_start,
        "results": {},
        "train": {label: training_budget(task, label) for label in labels},
    }
    for factor in args.factors:
        low = F.avg_pool2d(x, factor)
        outputs = {
            "bicubic": to_uint8(
                F.interpolate(low, scale_factor=factor, mode="bicubic", align_corners=False).clamp(
                    -1, 1
                )
            )
        }
        for label, model in models.items():
            with torch.no_grad():
                outputs[label] = to_uint8(
                    upscale(
                        model,
                        low.to(args.device),
                        factor,
                        seeds,
                        args.t_start,
                        SampleRequest("ddim", args.steps),
                    )
                )
        rows = {}
        for label, images in outputs.items():
            rows[label] = {"psnr_db": psnr(truth, images), "ssim": ssim(truth, images)}
            print(
                f"{task.name} x{factor} {label}: PSNR {rows[label]['psnr_db']:.2f} dB "
                f"SSIM {rows[label]['ssim']:.3f} (n={args.n})",
                flush=True,
            )
        record["results"][f"x{factor}"] = rows
        nearest = to_uint8(F.interpolate(low, scale_factor=factor, mode="nearest"))
        columns = min(8, args.n)
        grid_rows = [
            truth[:columns],
            nearest[:columns],
            *(images[:columns] for images in outputs.values()),
        ]
        save_grid(np.concatenate(grid_rows), f"superres-{task.name}-x{factor}.png", columns=columns)
        record["grid_rows"] = ["truth", "low-res (nearest)", *outputs]
        save_results(f"superres-{task.name}", record)


if __name__ == "__main__":
    main()
