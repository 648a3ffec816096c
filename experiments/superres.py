"""Super-resolution x2 and x4 of held-out images: the models against bicubic (PSNR, SSIM).

Each held-out truth (the task's size) is area-downsampled by the factor; bicubic upsampling is the
baseline and also the models' starting point (gigasynth.sampling.upscale noises it to
step T/10 and denoises from there).

    nice -n 15 python experiments/superres.py --task pathology --n 16 --factors 2 4

Writes docs/figures/superres-TASK-xF.png and docs/results/superres-TASK.json.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from common import TASKS, load_model, reference_images, save_grid, save_results, training_budget

from gigasynth.eval import psnr, ssim
from gigasynth.images import to_model_space, to_uint8
from gigasynth.sampling import SampleRequest, upscale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--scale", choices=["tiny", "paper"], default="tiny")
    parser.add_argument("--models", nargs="*", help="labels (default: all of the task)")
    parser.add_argument("--n", type=int, default=16, help="held-out images")
    parser.add_argument("--factors", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--t-start", type=int, help="noise level to start from (default T/10)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (at most t-start+1)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = TASKS[args.task]
    truth = reference_images(task, args.n)
    x = to_model_space(truth)
    seeds = list(range(3_000_000, 3_000_000 + args.n))
    labels = args.models or list(task.models[args.scale])
    models = {label: load_model(task.name, label, args.device) for label in labels}
    record = {"task": task.name, "n": args.n, "steps": args.steps, "t_start": args.t_start,
              "results": {}, "train": {label: training_budget(task, label) for label in labels}}
    for factor in args.factors:
        low = F.avg_pool2d(x, factor)
        outputs = {"bicubic": to_uint8(F.interpolate(low, scale_factor=factor, mode="bicubic",
                                                     align_corners=False).clamp(-1, 1))}
        for label, model in models.items():
            with torch.no_grad():
                outputs[label] = to_uint8(upscale(model, low.to(args.device), factor, seeds,
                                                  args.t_start,
                                                  SampleRequest("ddim", args.steps)))
        rows = {}
        for label, images in outputs.items():
            rows[label] = {"psnr_db": psnr(truth, images), "ssim": ssim(truth, images)}
            print(f"{task.name} x{factor} {label}: PSNR {rows[label]['psnr_db']:.2f} dB "
                  f"SSIM {rows[label]['ssim']:.3f} (n={args.n})", flush=True)
        record["results"][f"x{factor}"] = rows
        nearest = to_uint8(F.interpolate(low, scale_factor=factor, mode="nearest"))
        columns = min(8, args.n)
        grid_rows = [truth[:columns], nearest[:columns],
                     *(images[:columns] for images in outputs.values())]
        save_grid(np.concatenate(grid_rows), f"superres-{task.name}-x{factor}.png",
                  columns=columns)
        record["grid_rows"] = ["truth", "low-res (nearest)", *outputs]
        save_results(f"superres-{task.name}", record)


if __name__ == "__main__":
    main()
