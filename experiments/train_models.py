"""Train every model of a task with the same data, iterations, batch, schedule and seed.

nice -n 15 python experiments/train_models.py --task pathology --iterations 400 --batch 8
"""

from __future__ import annotations

import argparse

import torch
from common import TASKS, train_model


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = TASKS[args.task]
    for label, preset_name in task.models[args.scale].items():
        if args.models and label not in args.models:
            continue
        folder = train_model(
            task, label, preset_name, args.iterations, args.batch, args.seed, args.device
        )
        print(f"{task.name}/{label} ({preset_name}): {folder}", flush=True)


if __name__ == "__main__":
    main()
