"""Out-of-distribution sizes: sample at 1x, 2x and 4x the training size (64 px here).

Every scale gets the same pixel budget (n / s^2 images of s times the training size),
cut into non-overlapping crops of the training size and compared with n held-out real
images, so the numbers say whether the local texture survives at sizes never trained on.

    nice -n 15 python experiments/ood_sizes.py --task pathology --n 32 --scales 1 2 4

Writes docs/figures/ood-TASK-LABEL-Sx.png and docs/results/ood-sizes-TASK.json.
"""

from __future__ import annotations

import numpy as np
from common import (
    cached_samples,
    experiment_parser,
    load_model,
    parse_experiment,
    reference_images,
    sample_images,
    save_grid,
    save_results,
    training_budget,
)

from gigasynth.eval import compare_sets
from gigasynth.sampling import SampleRequest


def tiles(images: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping size x size crops of (N, size s, size s, 3) images."""
    n, h, w, c = images.shape
    s = h // size
    crops = images.reshape(n, s, size, s, size, c).transpose(0, 1, 3, 2, 4, 5)
    return crops.reshape(n * s * s, size, size, c)


def main() -> None:
    parser = experiment_parser(__doc__)
    parser.add_argument("--n", type=int, default=32, help="crops per scale (n / s^2 images)")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps")
    args, task, labels = parse_experiment(parser)
    real = reference_images(task, args.n)
    request = SampleRequest("ddim", args.steps)
    record = {
        "task": task.name,
        "n_crops": args.n,
        "crop": task.size,
        "steps": args.steps,
        "models": {},
        "train": {},
    }
    for label in labels:
        model = load_model(task.name, label, args.device)
        record["train"][label] = training_budget(task, label)
        record["models"][label] = []
        for scale in args.scales:
            size, count = task.size * scale, max(1, args.n // scale**2)
            batch = max(1, 16 // scale**2)
            tag = f"ddim{args.steps}-n{count}" + ("" if scale == 1 else f"-{size}px")
            images, seconds = cached_samples(
                task.name,
                label,
                tag,
                lambda model=model, size=size, count=count, batch=batch: sample_images(
                    model, count, size, request, batch=batch, device=args.device
                ),
            )
            save_grid(
                images[: max(1, 8 // scale)],
                f"ood-{task.name}-{label}-{scale}x.png",
                columns=max(1, 8 // scale),
            )
            metrics = compare_sets(real, tiles(images, task.size), device=args.device)
            record["models"][label].append(
                {
                    "scale": scale,
                    "size": size,
                    "images": count,
                    **metrics,
                    "sampling_seconds": seconds,
                }
            )
            print(
                f"{task.name}/{label} {scale}x ({size} px, {count} images): "
                f"FID {metrics['fid']:.1f} SWD {metrics['swd']:.1f} (n={metrics['n']} crops)",
                flush=True,
            )
            save_results(f"ood-sizes-{task.name}", record)


if __name__ == "__main__":
    main()
