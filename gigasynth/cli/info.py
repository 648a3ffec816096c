"""`gigasynth info PRESET|CHECKPOINT`: parameters and compute cost of a model."""

from __future__ import annotations

import argparse
import json

from gigasynth.cascade import is_cascade, load_cascade
from gigasynth.checkpoint import load_checkpoint
from gigasynth.config import PRESETS, preset
from gigasynth.models import build_model, count_parameters, macs_per_pixel


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="parameters and MACs of a preset or checkpoint")
    p.add_argument(
        "model",
        help=f"preset ({', '.join(PRESETS)}), checkpoint path, builtin:NAME "
        "or a cascade (cascade.json or its folder)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def show_cascade(args: argparse.Namespace) -> int:
    """The stages of a cascade, coarse to fine, with their resolutions and samplers."""
    cascade = load_cascade(args.model)
    if args.json:
        print(json.dumps(cascade.describe(), indent=2))
        return 0
    print(f"cascade  {cascade.path}")
    source = "generated tissue mask, or --layout" if cascade.layout == "generated" else "--layout"
    print(f"layout   {source}, read at {cascade.layout_mpp:.4g} µm/px")
    print(f"output   {cascade.mpp:.4g} µm/px, {cascade.factor}x the layout's size")
    for k, s in enumerate(cascade.stages, start=1):
        steps = "all T" if s.steps is None else f"{s.steps} steps"
        what = "mask stage" if s.condition_kind == "mask" else f"{s.condition_downsample}x"
        print(
            f"stage {k}  {s.checkpoint}: {what} to {s.mpp:.4g} µm/px "
            f"({s.condition_downsample}x its input), {s.sampler} {steps}, "
            f"sha256 {s.sha256[:16]}"
        )
    return 0


def run(args: argparse.Namespace) -> int:
    if args.model not in PRESETS and is_cascade(args.model):
        return show_cascade(args)
    if args.model in PRESETS:
        config = preset(args.model)
        model = build_model(config)
        source, digest = f"preset {args.model}", None
    else:
        ckpt = load_checkpoint(args.model)
        config, model, source, digest = ckpt.config, ckpt.model, args.model, ckpt.sha256
    report = {
        "model": source,
        "kind": config.kind,
        "parameters": count_parameters(model),
        "macs_per_pixel_per_step": macs_per_pixel(config),
        "nca_steps": config.nca_steps,
        "channels": config.channels,
        "hidden": config.hidden,
        "timesteps": config.timesteps,
        "schedule": config.schedule,
        "tileable": config.is_tileable,
        "halo_px": config.halo if config.is_tileable else None,
    }
    if config.kind == "fourier-diff-nca":
        report["fourier_steps"] = config.fourier_steps
        report["fourier_block"] = config.fourier_block
    if config.is_conditioned:
        report["condition_channels"] = config.condition_channels
        report["condition_downsample"] = config.condition_downsample
        report["condition_noise"] = config.condition_noise
    if digest:
        report["sha256"] = digest
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        width = max(len(k) for k in report)
        for key, value in report.items():
            is_count = isinstance(value, int) and not isinstance(value, bool)
            shown = f"{value:,}" if is_count else value
            print(f"{key:<{width}}  {shown}")
    return 0
