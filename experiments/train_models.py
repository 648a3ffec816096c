"""Train every model of a task with the same data, iterations, batch, schedule and seed.

nice -n 15 python experiments/train_models.py --task pathology --iterations 400 --batch 8

Slide tasks train on the slide's train region only (the held-out protocol). One model can
also be trained under another run name, with its own learning rate, until a CPU budget
(experiments/equal_compute.py does that for the equal-compute comparison):

python experiments/train_models.py --task pathology-10x --models unet --run-name unet-lr0.005 \
    --lr 0.005 --max-cpu-seconds 400 --iterations 1000000 --threads 1
"""

from __future__ import annotations

import argparse

import torch
from common import TASKS, train_model

from gigasynth.train import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument(
        "--scale",
        choices=["tiny", "paper"],
        default="tiny",
        help="tiny presets (CPU budget) or the paper's sizes (GPU)",
    )
    parser.add_argument("--models", nargs="*", help="labels to train (default: all of the task)")
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument(
        "--max-cpu-seconds", type=float, default=0.0, help="stop at this CPU time (0: none)"
    )
    parser.add_argument(
        "--run-name", help="the run's folder name instead of the model label (one model only)"
    )
    args = parser.parse_args()
    if args.run_name and (not args.models or len(args.models) != 1):
        parser.error("--run-name needs exactly one model in --models")
    torch.set_num_threads(args.threads)
    task = TASKS[args.task]
    for label, preset_name in task.models[args.scale].items():
        if args.models and label not in args.models:
            continue
        folder = train_model(
            task,
            args.run_name or label,
            preset_name,
            args.iterations,
            args.batch,
            args.seed,
            args.device,
            lr=args.lr,
            max_cpu_seconds=args.max_cpu_seconds,
        )
        print(f"{task.name}/{args.run_name or label} ({preset_name}): {folder}", flush=True)


if __name__ == "__main__":
    main()
