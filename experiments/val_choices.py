"""The bundled cascade's DDIM step counts, chosen on the validation region.

    python experiments/val_choices.py --runs runs/experiments/val-choices

Each stage of builtin:skin is sampled on the val region (`sr_stage.py --region val`) at
several step counts; each count is scored against the targets RESULTS writes once (band
energy 0.67-1.5 in each octave of the stage's output, glass noise at most 1.5x the real
region's), and the rule picks the count that meets the most targets, the fewest steps
among equals. Runs already in --runs are read, not repeated. Writes
docs/results/val-choices.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import SLIDE, save_results

BAND_TARGET = (0.67, 1.5)
GLASS_TARGET = 1.5  # synthetic glass noise over the real region's, at most
STAGES = {  # label: (checkpoint, downsample of level 0 the stage works at, step counts)
    "layout": ("builtin:skin-layout", 8, (10, 25, 50)),
    "sr4": ("builtin:skin-sr4", 2, (7, 14, 28)),
}


def _score(figures: dict) -> dict:
    stage = figures["stage"]
    bands = [BAND_TARGET[0] <= r <= BAND_TARGET[1] for r in stage["band_ratios"]]
    glass = stage["glass_std"] is not None and (
        stage["glass_std"] <= GLASS_TARGET * figures["real_glass_std"]
    )
    return {"bands_met": bands, "glass_met": glass, "targets_met": sum(bands) + glass}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, required=True)
    args = p.parse_args()
    record: dict = {"region": "val", "rule": __doc__.split("\n\n")[1].strip(), "stages": {}}
    for label, (checkpoint, downsample, counts) in STAGES.items():
        rows = []
        for steps in counts:
            out = args.runs / f"{label}-ddim{steps}"
            if not (out / "figures.json").exists():
                command = [sys.executable, "sr_stage.py", "--checkpoint", checkpoint]
                command += ["--slide", str(SLIDE), "--region", "val", "--downsample"]
                command += [str(downsample), "--steps", str(steps), "--out", str(out)]
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            figures = json.loads((out / "figures.json").read_text())
            rows.append({"steps": steps, **figures, **_score(figures)})
        best = max(rows, key=lambda r: (r["targets_met"], -r["steps"]))
        record["stages"][label] = {"checkpoint": checkpoint, "runs": rows, "chosen": best["steps"]}
        print(f"{label}: DDIM {best['steps']}", flush=True)
    print(save_results("val-choices", record))


if __name__ == "__main__":
    main()
