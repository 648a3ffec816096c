"""Sample quality of every model of a task against held-out real images (FID, KID, SWD).

    nice -n 15 python experiments/quality.py --task pathology --n 64 --steps 25

Writes docs/figures/quality-TASK-*.png (sample grids) and docs/results/quality-TASK.json.
"""

from __future__ import annotations

import argparse

import torch
from common import (
    TASKS,
    cached_samples,
    load_model,
    reference_images,
    sample_images,
    save_grid,
    save_results,
    second_real_set,
    training_budget,
)

from gigasynth.eval import compare_sets
from gigasynth.sampling import SampleRequest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--scale", choices=["tiny", "paper"], default="tiny")
    parser.add_argument("--n", type=int, default=64, help="samples per model and real images")
    parser.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = TASKS[args.task]
    request = SampleRequest(args.sampler, args.steps if args.sampler == "ddim" else None)
    real = reference_images(task, args.n)
    save_grid(real[:16], f"quality-{task.name}-real.png")
    record = {"task": task.name, "n": args.n, "size": task.size, "sampler": args.sampler,
              "steps": args.steps if args.sampler == "ddim" else "all", "models": {}}
    floor = compare_sets(real, second_real_set(task, args.n), device=args.device)
    record["real_vs_real"] = floor
    print(f"{task.name}/real vs real: FID {floor['fid']:.1f} KID {floor['kid']:.4f} "
          f"SWD {floor['swd']:.1f} (n={floor['n']})", flush=True)
    for label in task.models[args.scale]:
        model = load_model(task.name, label, args.device)
        fake, seconds = cached_samples(
            task.name, label, f"{args.sampler}{args.steps}-n{args.n}",
            lambda model=model: sample_images(model, args.n, task.size, request,
                                              device=args.device),
        )
        save_grid(fake[:16], f"quality-{task.name}-{label}.png")
        metrics = compare_sets(real, fake, device=args.device)
        record["models"][label] = {**metrics, "train": training_budget(task, label),
                                   "sampling_seconds": seconds}
        print(f"{task.name}/{label}: FID {metrics['fid']:.1f} KID {metrics['kid']:.4f} "
              f"SWD {metrics['swd']:.1f} (n={metrics['n']})", flush=True)
        save_results(f"quality-{task.name}", record)


if __name__ == "__main__":
    main()
