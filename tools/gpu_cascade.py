"""The two Python steps of tools/gpu_cascade.sh: a cascade definition and a verdict.

    python tools/gpu_cascade.py define OUT/cascade --steps 25 20
        writes OUT/cascade/cascade.json ("generated" layout; stages layout/checkpoint,
        sr4/checkpoint), checks it as `gigasynth synth` will (gigasynth.cascade.load_cascade)
        and prints each stage's training step and µm/px.
    python tools/gpu_cascade.py verdict GPU.json [BUNDLED.json]
        prints the held-out figures of `gigasynth eval --json` for the GPU cascade (and the
        bundled one) and a one-line verdict: the GPU cascade replaces the bundled one only
        if it is better on KID at 4x and at 16x and on the band ratios.

The band-ratio figure is the mean |log2(synthetic / real)| over the octave bands (0: every
band's energy equals the slide's); lower is better.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from gigasynth.atomic import atomic_write_bytes
from gigasynth.cascade.definition import CASCADE_FILE, load_cascade
from gigasynth.checkpoint import describe_checkpoint
from gigasynth.errors import GigasynthError

STAGES = ("layout", "sr4")  # run folders under the cascade folder, coarse to fine
VERDICT_SCALES = (4, 16)  # zooms whose KID decides (1x crops are mostly background)


def define(folder: Path, steps: tuple[int, int]) -> None:
    """Write and check folder/cascade.json over the two trained stages."""
    doc = {
        "name": "gpu-cascade",
        "layout": "generated",
        "stages": [
            {"checkpoint": f"{name}/checkpoint", "sampler": "ddim", "steps": k}
            for name, k in zip(STAGES, steps, strict=True)
        ],
    }
    atomic_write_bytes(folder / CASCADE_FILE, (json.dumps(doc, indent=2) + "\n").encode())
    cascade = load_cascade(folder)
    for name, stage in zip(STAGES, cascade.stages, strict=True):
        step = describe_checkpoint(stage.checkpoint).meta.get("step")
        print(
            f"{name}: {stage.condition_kind} stage, {stage.mpp:g} µm/px, condition "
            f"1/{stage.condition_downsample}, trained {step} iterations, DDIM {stage.steps}"
        )
    print(f"cascade: {folder / CASCADE_FILE}")


def band_error(figures: dict[str, Any]) -> float:
    """Mean |log2 ratio| over the bands with a finite ratio (inf when there are none)."""
    ratios = [b["ratio"] for b in figures["bands"] if b["ratio"] is not None and b["ratio"] > 0]
    if not ratios:
        return math.inf
    return sum(abs(math.log2(r)) for r in ratios) / len(ratios)


def kid_at(figures: dict[str, Any], scale: int) -> dict[str, Any]:
    """The scale-`scale` row of an evaluation."""
    for row in figures["scales"]:
        if row["scale"] == scale:
            return row
    raise GigasynthError(f"{figures['fake']}: no figures at {scale}x (run eval with --scales)")


def summary(name: str, figures: dict[str, Any]) -> list[str]:
    """Human lines: KID/FID per zoom, band ratios, background."""
    lines = [f"{name}: {figures['fake']}"]
    for row in figures["scales"]:
        lines.append(
            f"  {row['scale']:>2}x: KID {row['kid']:.4f} [{row['kid_low']:.4f}, "
            f"{row['kid_high']:.4f}] FID {row['fid']:.1f} (n={row['n']}, {row['crop']} px)"
        )
    bands = ", ".join(
        f"{b['low_px']}-{b['high_px']} px " + ("-" if b["ratio"] is None else f"{b['ratio']:.2f}")
        for b in figures["bands"]
    )
    lines.append(f"  bands (synthetic / real): {bands}; error {band_error(figures):.3f}")
    real, fake = figures["colour"]["real"], figures["colour"]["fake"]
    lines.append(
        f"  background {fake['background_fraction']:.0%} (real {real['background_fraction']:.0%})"
    )
    return lines


def verdict(gpu: dict[str, Any], bundled: dict[str, Any] | None) -> str:
    """One line: replace the bundled cascade, or keep it, and on which figures."""
    if bundled is None:
        return "verdict: no bundled cascade evaluated (give its path), nothing to decide"
    worse = []
    for scale in VERDICT_SCALES:
        a, b = kid_at(gpu, scale), kid_at(bundled, scale)
        overlap = a["kid_low"] <= b["kid_high"] and b["kid_low"] <= a["kid_high"]
        note = ", intervals overlap" if overlap else ""
        if not a["kid"] < b["kid"]:
            worse.append(f"KID {scale}x {a['kid']:.4f} vs {b['kid']:.4f}{note}")
    ga, gb = band_error(gpu), band_error(bundled)
    if not ga < gb:
        worse.append(f"band error {ga:.3f} vs {gb:.3f}")
    if worse:
        return "verdict: KEEP the bundled cascade; the GPU one is not better on " + "; ".join(worse)
    kids = ", ".join(
        f"{s}x {kid_at(gpu, s)['kid']:.4f} vs {kid_at(bundled, s)['kid']:.4f}"
        for s in VERDICT_SCALES
    )
    return f"verdict: REPLACE the bundled cascade (KID {kids}; band error {ga:.3f} vs {gb:.3f})"


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GigasynthError(f"{path}: not an evaluation's JSON ({exc})") from None
    if not isinstance(doc, dict) or "scales" not in doc or "bands" not in doc:
        raise GigasynthError(f"{path}: not a slide-mode `gigasynth eval --json` output")
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("define", help="write and check FOLDER/cascade.json")
    d.add_argument("folder", type=Path)
    d.add_argument("--steps", type=int, nargs=2, default=(25, 20), metavar=("LAYOUT", "SR"))
    v = sub.add_parser("verdict", help="figures of both cascades and the verdict")
    v.add_argument("gpu", type=Path)
    v.add_argument("bundled", type=Path, nargs="?")
    args = parser.parse_args(argv)
    try:
        if args.command == "define":
            define(args.folder, tuple(args.steps))
            return 0
        gpu = _read(args.gpu)
        bundled = _read(args.bundled) if args.bundled else None
        lines = summary("GPU cascade", gpu)
        if bundled is not None:
            lines += summary("bundled cascade", bundled)
        row = kid_at(gpu, max(VERDICT_SCALES))
        lines.append(
            f"note: at {row['scale']}x the real region offers {row['real_tiles']} disjoint "
            f"{row['crop']} px crops, so its KID compares overlapping crops"
        )
        print("\n".join([*lines, verdict(gpu, bundled)]))
        return 0
    except GigasynthError as exc:
        print(f"gpu_cascade: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
