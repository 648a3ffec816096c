"""Sample quality of every model of a task against held-out real images (FID, KID, SWD).

    nice -n 15 python experiments/quality.py --task pathology --n 64 --steps 25

Writes docs/figures/quality-TASK-*.png (sample grids) and docs/results/quality-TASK.json.
"""

from __future__ import annotations

from common import (
    cached_samples,
    experiment_parser,
    load_model,
    parse_experiment,
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
    parser = experiment_parser(__doc__)
    parser.add_argument("--n", type=int, default=64, help="samples per model and real images")
    parser.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps")
    args, task, labels = parse_experiment(parser)
    request = SampleRequest(args.sampler, args.steps if args.sampler == "ddim" else None)
    real = reference_images(task, args.n)
    save_grid(real[:16], f"quality-{task.name}-real.png")
    record = {
        "task": task.name,
        "n": args.n,
        "size": task.size,
        "sampler": args.sampler,
        "steps": args.steps if args.sampler == "ddim" else "all",
        "models": {},
    }
    floor = compare_sets(real, second_real_set(task, args.n), device=args.device)
    record["real_vs_real"] = floor
    print(
        f"{task.name}/real vs real: FID {floor['fid']:.1f} KID {floor['kid']:.4f} "
        f"SWD {floor['swd']:.1f} (n={floor['n']})",
        flush=True,
    )
    for label in labels:
        model = load_model(task.name, label, args.device)
        fake, seconds = cached_samples(
            task.name,
            label,
            f"{args.sampler}{args.steps}-n{args.n}",
            lambda model=model: sample_images(
                model, args.n, task.size, request, device=args.device
            ),
        )
        save_grid(fake[:16], f"quality-{task.name}-{label}.png")
        metrics = compare_sets(real, fake, device=args.device)
        record["models"][label] = {
            **metrics,
            "train": training_budget(task, label),
            "sampling_seconds": seconds,
        }
        print(
            f"{task.name}/{label}: FID {metrics['fid']:.1f} KID {metrics['kid']:.4f} "
            f"SWD {metrics['swd']:.1f} (n={metrics['n']})",
            flush=True,
        )
        save_results(f"quality-{task.name}", record)


if __name__ == "__main__":
    main()
