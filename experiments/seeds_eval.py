"""A model's figures over several seeds, on the validation and the test region.

    python experiments/seeds_eval.py --model builtin:skin --size 1024 --seeds 8 --name skin

Draws one field per seed (`gigasynth synth`, a cascade's layout generated from the seed),
then, for each region (val: where choices are made; test: the figures a release reports),
`gigasynth.eval.slide.evaluate_slides` of all fields against the same real crops (32 px,
n per side and zoom, block-bootstrap intervals, all crops and tissue only) and their mean
and spread (`summarize_fields`); and the copy check of the fields against the train region.
Writes docs/results/seeds-NAME.json (the record RESULTS' tables are generated from) and
keeps the fields under runs/experiments/seeds-NAME/ for pictures.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import asdict

from common import RUNS, SLIDE, save_results

from gigasynth.eval.slide import check_copies, evaluate_slides, summarize_fields


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a checkpoint or cascade reference")
    p.add_argument("--name", required=True)
    p.add_argument("--size", type=int, default=1024, help="side of each field, px")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--steps", type=int, help="DDIM steps of a single-scale model")
    p.add_argument("--regions", default="val,test")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--crop", type=int, default=32)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    out = RUNS / f"seeds-{args.name}"
    out.mkdir(parents=True, exist_ok=True)
    fields, seconds = [], []
    for seed in range(args.seeds):
        field = out / f"seed-{seed}.ome.zarr"
        command = [sys.executable, "-m", "gigasynth", "synth", "--checkpoint", args.model]
        command += ["--size", f"{args.size}x{args.size}", "--seed", str(seed)]
        command += ["--workers", str(args.workers), "--out", str(field), "--overwrite"]
        if args.steps is not None:
            command += ["--sampler", "ddim", "--steps", str(args.steps)]
        command += ["--preview", str(out / f"seed-{seed}.png")]
        start = time.time()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        seconds.append(round(time.time() - start, 1))
        fields.append(str(field))
        print(f"seed {seed}: {seconds[-1]} s", flush=True)
    record: dict = {
        "model": args.model,
        "size": args.size,
        "seeds": list(range(args.seeds)),
        "steps": args.steps,
        "synth_seconds": seconds,
        "command": " ".join(sys.argv),
        "regions": {},
    }
    for region in args.regions.split(","):
        evaluations = evaluate_slides(
            SLIDE, fields, n=args.n, crop=args.crop, real_region=region, seed=0
        )
        record["regions"][region] = {
            "summary": summarize_fields(evaluations),
            "fields": [e.to_dict() for e in evaluations],
        }
        print(f"{region}: done", flush=True)
    record["copies"] = asdict(check_copies(SLIDE, fields, region="train"))
    print(save_results(f"seeds-{args.name}", record))


if __name__ == "__main__":
    main()
