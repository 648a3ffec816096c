"""Quality against speed: FID, KID and SWD against the number of DDIM steps.

    nice -n 15 python experiments/ddim_steps.py --task pathology --n 32 \
        --steps 10 25 50 100 300

Writes docs/figures/ddim-steps-TASK.png and docs/results/ddim-steps-TASK.json.
"""

from __future__ import annotations

import matplotlib
from common import (
    FIGURES,
    cached_samples,
    experiment_parser,
    load_model,
    parse_experiment,
    reference_images,
    sample_images,
    save_results,
    training_budget,
)

from gigasynth.eval import compare_sets
from gigasynth.sampling import SampleRequest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the headless backend)
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402


def plot(record: dict, path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    panels = [
        ("fid", f"FID (n={record['n']})"),
        ("kid", f"KID (n={record['n']})"),
        ("seconds_per_image", f"seconds per {record['size']} px image"),
    ]
    for label, rows in record["models"].items():
        steps = [r["steps"] for r in rows]
        for ax, (key, _) in zip(axes, panels, strict=True):
            ax.plot(steps, [r[key] for r in rows], marker="o", label=label)
    for ax, (_, title) in zip(axes, panels, strict=True):
        ax.set_xscale("log")
        ax.set_xticks(sorted({r["steps"] for rows in record["models"].values() for r in rows}))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("DDIM steps")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{record['task']}: quality against sampling steps")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = experiment_parser(__doc__)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50, 100, 300])
    args, task, labels = parse_experiment(parser)
    real = reference_images(task, args.n)
    record = {
        "task": task.name,
        "n": args.n,
        "size": task.size,
        "sampler": "ddim (eta 0)",
        "device": args.device,
        "models": {},
        "train": {},
    }
    for label in labels:
        model = load_model(task.name, label, args.device)
        record["train"][label] = training_budget(task, label)
        record["models"][label] = []
        for steps in sorted(args.steps):
            request = SampleRequest("ddim", steps)
            fake, seconds = cached_samples(
                task.name,
                label,
                f"ddim{steps}-n{args.n}",
                lambda model=model, request=request: sample_images(
                    model, args.n, task.size, request, device=args.device
                ),
            )
            metrics = compare_sets(real, fake, device=args.device)
            record["models"][label].append(
                {"steps": steps, **metrics, "seconds_per_image": seconds / args.n}
            )
            print(
                f"{task.name}/{label} K={steps}: FID {metrics['fid']:.1f} "
                f"(n={metrics['n']}), {seconds / args.n:.2f} s/image",
                flush=True,
            )
            save_results(f"ddim-steps-{task.name}", record)
            plot(record, FIGURES / f"ddim-steps-{task.name}.png")


if __name__ == "__main__":
    main()
