"""Diff-NCA against the UNet baseline at equal compute, each at its own tuned learning rate.

The paper compares models at equal iterations; on a CPU the UNet makes many more
iterations per second than the Diff-NCA, so the fair question is which is better for the
same CPU time. Each model trains on the slide's train region for every learning rate of
its grid until its process has used --budget CPU seconds (one thread, `nice -n 19`),
--parallel runs at a time. The learning rate is chosen on the TRAIN region (KID of n
samples against train-region tissue crops), never on the test region; the chosen runs
become the task's `diff-nca` and `unet` models, and `unet-equal-iterations` is the UNet at
its chosen rate trained for as many iterations as the chosen Diff-NCA made. quality.py,
ddim_steps.py, ood_sizes.py, inpaint.py and superres.py then measure them on the test
region.

    nice -n 19 python experiments/equal_compute.py train --budget 400
    nice -n 19 python experiments/equal_compute.py select

Runs: runs/experiments/pathology-10x/<model>-lr<LR>/; record: docs/results/equal-compute.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from common import (
    RESULTS,
    TASKS,
    load_model,
    run_folder,
    sample_images,
    train_model,
    validation_images,
)

from gigasynth.eval import compare_sets
from gigasynth.sampling import SampleRequest

HERE = Path(__file__).resolve().parent
TASK = TASKS["pathology-10x"]
BATCH = 8
GRID = {
    "diff-nca": (8e-4, 1.6e-3, 3.2e-3),
    "unet": (5e-4, 1.6e-3, 5e-3),
}


def run_name(model: str, lr: float) -> str:
    return f"{model}-lr{lr:g}"


def train_grid(budget: float, parallel: int) -> None:
    """Every (model, learning rate) of the grid until `budget` CPU seconds, `parallel` at
    a time; each run's own CPU time (start-up included) goes to its cpu.json. A run
    already claimed (by an earlier or a concurrent call) is skipped."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    pending = [(m, lr) for m, rates in GRID.items() for lr in rates]
    running: dict[int, str] = {}
    while pending or running:
        while pending and len(running) < parallel:
            model, lr = pending.pop(0)
            name = run_name(model, lr)
            folder = run_folder(TASK.name, name)
            folder.mkdir(parents=True, exist_ok=True)
            try:  # claimed by this or another `train` (a second one may share the grid)
                (folder / "claimed").touch(exist_ok=False)
            except FileExistsError:
                continue
            cmd = [
                "nice", "-n", "19", sys.executable, str(HERE / "train_models.py"),
                "--task", TASK.name, "--models", model, "--run-name", name,
                "--lr", str(lr), "--max-cpu-seconds", str(budget),
                "--iterations", "10000000", "--batch", str(BATCH), "--threads", "1",
            ]  # fmt: skip
            proc = subprocess.Popen(cmd, env=env)
            running[proc.pid] = name
            print(f"started {name}", flush=True)
        if not running:
            break
        pid, status, usage = os.wait4(-1, 0)
        name = running.pop(pid, None)
        if name is None:
            continue
        record = {
            "exit": os.waitstatus_to_exitcode(status),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "budget_s": budget,
        }
        (run_folder(TASK.name, name) / "cpu.json").write_text(json.dumps(record))
        print(f"finished {name}: {record}", flush=True)


def _experiment(name: str) -> dict[str, Any]:
    return json.loads((run_folder(TASK.name, name) / "experiment.json").read_text())


def select(n: int, steps: int) -> None:
    """Score every run against train-region crops, keep the best rate of each model as
    the task's model, train the UNet at equal iterations, write the record."""
    real = validation_images(TASK, n)
    request = SampleRequest("ddim", steps)
    rows: dict[str, Any] = {}
    for model, rates in GRID.items():
        for lr in rates:
            name = run_name(model, lr)
            fake = sample_images(load_model(TASK.name, name), n, TASK.size, request)
            metrics = compare_sets(real, fake)
            cpu = json.loads((run_folder(TASK.name, name) / "cpu.json").read_text())
            rows[name] = {
                "model": model,
                "lr": lr,
                "iterations": _experiment(name)["iterations"],
                "cpu_s": cpu["cpu_s"],
                "validation_kid": metrics["kid"],
                "validation_fid": metrics["fid"],
                "n": metrics["n"],
            }
            print(name, rows[name], flush=True)
    chosen = {
        model: min(
            (r for r in rows.values() if r["model"] == model), key=lambda r: r["validation_kid"]
        )
        for model in GRID
    }
    for model, row in chosen.items():
        target = run_folder(TASK.name, model)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(run_folder(TASK.name, run_name(model, row["lr"])), target)
        record = _experiment(model)
        record["model"] = model
        (target / "experiment.json").write_text(json.dumps(record, indent=2))
    equal_iterations = "unet-equal-iterations"
    shutil.rmtree(run_folder(TASK.name, equal_iterations), ignore_errors=True)
    started = time.process_time()
    train_model(
        TASK,
        equal_iterations,
        "unet-tiny",
        chosen["diff-nca"]["iterations"],
        BATCH,
        seed=0,
        lr=chosen["unet"]["lr"],
    )
    out = {
        "task": TASK.name,
        "region": {"train": TASK.train_region, "validation": TASK.train_region},
        "batch": BATCH,
        "sampler": f"ddim {steps}",
        "runs": rows,
        "chosen": {m: r["lr"] for m, r in chosen.items()},
        "unet_equal_iterations": {
            "iterations": chosen["diff-nca"]["iterations"],
            "lr": chosen["unet"]["lr"],
            "cpu_s": round(time.process_time() - started, 1),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "equal-compute.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["chosen"]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the learning-rate grid at an equal CPU budget")
    t.add_argument("--budget", type=float, default=400.0, help="CPU seconds per run")
    t.add_argument("--parallel", type=int, default=2)
    s = sub.add_parser("select", help="choose each model's rate on the train region")
    s.add_argument("--n", type=int, default=64, help="samples and real crops per run")
    s.add_argument("--steps", type=int, default=25, help="DDIM steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.command == "train":
        train_grid(args.budget, args.parallel)
    else:
        select(args.n, args.steps)


if __name__ == "__main__":
    main()
