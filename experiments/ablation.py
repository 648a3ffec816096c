"""Training recipe ablation under the held-out protocol, at an equal CPU budget per row.

Each row is one recipe (flags of `gigasynth train`) trained on the TRAIN region of the
sample slide until its process has used --budget CPU seconds (`--max-cpu-seconds`, one
thread, `nice -n 19`, --parallel rows at a time), then scored against the TEST region:
seed 0 samples one --field px field (DDIM --ddim steps) at the model's native scale, and
gigasynth.eval.slide.evaluate_slide compares it with the real test region (KID on n 64 px
crops per side, luminance band energy ratios per octave, near-white background fraction).

    nice -n 19 python experiments/ablation.py train --budget 360 --rows old hint
    nice -n 19 python experiments/ablation.py score --rows old hint

Runs go to runs/ablation/<row>/ (not committed); scores to docs/results/ablation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SLIDE = ROOT / "data" / "cmu_small_region.svs"
RUNS = ROOT / "runs" / "ablation"
RESULTS = ROOT / "docs" / "results" / "ablation.json"
DOWNSAMPLE = 2.0
CROP = 64  # KID crop side at native scale
MPP = 0.998  # the models' pixel size (level 0 at downsample 2)

_OLD = [
    "--size",
    "32",
    "--min-tissue",
    "0.5",
    "--augment",
    "none",
    "--loss-weighting",
    "none",
    "--no-zero-terminal-snr",
]
_NEW = [
    "--size",
    "64",
    "--min-tissue",
    "0",
    "--augment",
    "dihedral",
    "--loss-weighting",
    "min-snr",
    "--zero-terminal-snr",
]


def _with(base: list[str], **changes: str) -> list[str]:
    """`base` flags with some values replaced (flag name without dashes, '_' for '-')."""
    out = list(base)
    for name, value in changes.items():
        flag = "--" + name.replace("_", "-")
        if flag in out:
            i = out.index(flag)
            out[i + 1] = value
        else:
            out += [flag, value]
    return out


_V2 = _with(_NEW, min_tissue="0.02")
_V2_LINEAR = [*_V2[:-1], "--no-zero-terminal-snr"]

# Rows: the old bundled recipe, the colleague's hint, then one change at a time.
ROWS: dict[str, tuple[str, list[str]]] = {
    "old": ("bundled recipe: 32 px, tissue patches, no aug/weighting, linear T", _OLD),
    "hint": (
        "64 px + dihedral + min-SNR 5 (tissue patches)",
        _with(_OLD, size="64", augment="dihedral", loss_weighting="min-snr"),
    ),
    "hint+bg": (
        "hint + uniform crops (--min-tissue 0)",
        _with(_OLD, size="64", augment="dihedral", loss_weighting="min-snr", min_tissue="0"),
    ),
    "new": ("hint + uniform crops + zero terminal SNR", _NEW),
    "new-noweight": ("new without min-SNR weighting", _with(_NEW, loss_weighting="none")),
    # new, but no crop of pure glass (the train region of the sample slide is 78 % glass,
    # its test region 54-58 %); then each option taken away or changed, one at a time.
    "v2": ("new + crops with some tissue (--min-tissue 0.02)", _V2),
    "v2-noaug": ("v2 without augmentation", _with(_V2, augment="none")),
    "v2-noweight": ("v2 without min-SNR weighting", _with(_V2, loss_weighting="none")),
    "v2-linear": ("v2 with the linear schedule (no zero terminal SNR)", _V2_LINEAR),
    "v2-cosine": ("v2 with cosine LR, 20 warm-up", _with(_V2, lr_schedule="cosine", warmup="20")),
    "v2-small": ("v2 with the small preset", _with(_V2, preset="small")),
    "v2-32px": ("v2 with 32 px crops", _with(_V2, size="32")),
}


def train_command(row: str, budget: float, iterations: int) -> list[str]:
    flags = ROWS[row][1]
    if "--preset" not in flags:
        flags = [*flags, "--preset", "tiny"]
    return [
        sys.executable,
        "-m",
        "gigasynth",
        "train",
        "--data",
        str(SLIDE),
        "--out",
        str(RUNS / row),
        "--region",
        "train",
        "--downsample",
        str(DOWNSAMPLE),
        "--batch",
        "8",
        "--iterations",
        str(iterations),
        "--max-cpu-seconds",
        str(budget),
        "--save-every",
        "50",
        "--seed",
        "0",
        "--loader-workers",
        "0",
        "--quiet",
        *flags,
    ]


def train_rows(rows: list[str], budget: float, parallel: int, cosine_iterations: int) -> None:
    """Train rows `parallel` at a time; each row's CPU time (with start-up) goes to row.json."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    pending = list(rows)
    running: dict[int, tuple[str, subprocess.Popen, float]] = {}
    while pending or running:
        while pending and len(running) < parallel:
            row = pending.pop(0)
            if (RUNS / row / "row.json").exists():
                continue
            RUNS.mkdir(parents=True, exist_ok=True)
            iterations = cosine_iterations if "cosine" in ROWS[row][1] else 100_000
            cmd = ["nice", "-n", "19", *train_command(row, budget, iterations)]
            with open(RUNS / f"{row}.log", "w") as log:
                proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            running[proc.pid] = (row, proc, time.time())
            print(f"started {row}: {' '.join(cmd)}", flush=True)
        pid, status, usage = os.wait4(-1, 0)  # usage: the child's own CPU time
        if pid not in running:
            continue
        row, proc, started = running.pop(pid)
        cpu = usage.ru_utime + usage.ru_stime
        steps = [
            json.loads(line)["step"]
            for line in (RUNS / row / "metrics.jsonl").read_text().splitlines()
            if line.strip()
        ]
        record = {
            "row": row,
            "flags": ROWS[row][1],
            "exit": os.waitstatus_to_exitcode(status),
            "cpu_s": round(cpu, 1),
            "wall_s": round(time.time() - started, 1),
            "budget_s": budget,
            "iterations": max(steps, default=0),
            "command": " ".join(train_command(row, budget, 0)[1:]),
        }
        (RUNS / row / "row.json").write_text(json.dumps(record, indent=2))
        print(f"finished {row}: {record}", flush=True)


# --- scoring -----------------------------------------------------------------------------


def sample_field(ref: str, side: int, ddim: int, seed: int = 0) -> np.ndarray:
    """One side x side sample (DDIM eta 0, this seed) at the model's native scale."""
    from gigasynth.checkpoint import load_checkpoint
    from gigasynth.images import to_uint8
    from gigasynth.sampling import SampleRequest, generate

    model = load_checkpoint(ref).model.eval()
    return to_uint8(generate(model, side, side, [seed], SampleRequest("ddim", ddim)))[0]


def score(ref: str, side: int, ddim: int, n: int) -> dict[str, Any]:
    """Held-out figures of one checkpoint: gigasynth.eval.slide.evaluate_slide of a sampled
    field against the slide's TEST region at the native scale (1x)."""
    from gigasynth.eval.slide import evaluate_slide

    t0 = time.process_time()
    field = sample_field(ref, side, ddim)
    result = evaluate_slide(
        SLIDE, field, scales=(1,), n=n, crop=CROP, mpp=MPP, real_region="test", bootstrap=200
    )
    s = result.scales[0]
    return {
        "kid": s.kid,
        "kid_low": s.kid_low,
        "kid_high": s.kid_high,
        "fid": s.fid,
        "n": s.n,
        "band_ratio": {f"{b.low_px}-{b.high_px}": round(b.ratio, 3) for b in result.bands},
        "background": round(result.colour_fake.background_fraction, 3),
        "background_real": round(result.colour_real.background_fraction, 3),
        "score_cpu_s": round(time.process_time() - t0, 1),
    }


def score_rows(refs: dict[str, str], side: int, ddim: int, n: int, out: Path) -> None:
    results = json.loads(out.read_text()) if out.exists() else {}
    for name, ref in refs.items():
        figures = score(ref, side, ddim, n)
        row_file = RUNS / name / "row.json"
        train_info = json.loads(row_file.read_text()) if row_file.exists() else {}
        results[name] = {
            **train_info,
            **figures,
            "checkpoint": ref,
            "protocol": {
                "field_px": side,
                "ddim": ddim,
                "seed": 0,
                "crop": CROP,
                "region": "test",
                "mpp": MPP,
            },
        }
        print(name, json.dumps(results[name]), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))


def table(results: dict[str, Any]) -> str:
    """The markdown table of docs/RESULTS.md."""
    bands = list(next(iter(results.values()))["band_ratio"])
    head = (
        "| row | recipe | iterations | CPU s | KID [95 % CI] (n) | "
        + " | ".join(f"{b} px" for b in bands)
        + " | background (real) |"
    )
    lines = [head, "|" + "---|" * (6 + len(bands))]
    for name, r in results.items():
        ratios = " | ".join(f"{r['band_ratio'].get(b, float('nan')):.2f}" for b in bands)
        recipe = ROWS[name][0] if name in ROWS else r.get("checkpoint", "")
        lines.append(
            f"| {name} | {recipe} | {r.get('iterations', '')} | {r.get('cpu_s', '')} | "
            f"{r['kid']:.4f} [{r['kid_low']:.4f}, {r['kid_high']:.4f}] ({r['n']}) | "
            f"{ratios} | {r['background']:.2f} ({r['background_real']:.2f}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train rows at an equal CPU budget")
    t.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=list(ROWS))
    t.add_argument("--budget", type=float, default=360.0, help="CPU seconds per row")
    t.add_argument("--parallel", type=int, default=2)
    t.add_argument(
        "--cosine-iterations",
        type=int,
        default=200,
        help="where a cosine row's LR ends (its expected iterations in the budget)",
    )
    s = sub.add_parser("score", help="score rows (or other checkpoints) on the test region")
    s.add_argument("--rows", nargs="*", default=[])
    s.add_argument(
        "--checkpoint",
        nargs="*",
        default=[],
        metavar="NAME=REF",
        help="extra checkpoints to score, e.g. builtin=builtin:tiny-pathology",
    )
    s.add_argument("--field", type=int, default=384, help="field side in px")
    s.add_argument("--ddim", type=int, default=25)
    s.add_argument("--n", type=int, default=64, help="KID crops per side")
    s.add_argument("--out", type=Path, default=RESULTS)
    p = sub.add_parser("table", help="print the markdown table of the scored rows")
    p.add_argument("--out", type=Path, nargs="+", default=[RESULTS])
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.command == "train":
        train_rows(args.rows, args.budget, args.parallel, args.cosine_iterations)
    elif args.command == "score":
        refs = {row: str(RUNS / row / "checkpoint") for row in args.rows}
        refs.update(dict(item.split("=", 1) for item in args.checkpoint))
        score_rows(refs, args.field, args.ddim, args.n, args.out)
    else:
        merged: dict[str, Any] = {}
        for path in args.out:
            merged.update(json.loads(path.read_text()))
        print(table(merged))


if __name__ == "__main__":
    main()
