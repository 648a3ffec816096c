"""`gigasynth train`: diffusion training of a preset on slides, image folders or .npz arrays."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from gigasynth.cluster.devices import pick_device
from gigasynth.config import PRESETS, preset
from gigasynth.errors import GigasynthError
from gigasynth.train import TrainConfig

# The trainer's defaults are TrainConfig's; the flags show them, they do not repeat them.
DEFAULTS = TrainConfig()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on slides or images")
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        help="slides (anything OpenSlide reads), folders of slides or images, .npz "
        "files, or globs of these (quote them: 'slides/**/*.svs')",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="an unreadable slide is fatal (default: skipped with a warning)",
    )
    p.add_argument(
        "--slide-weighting",
        choices=["tissue", "equal"],
        default=DEFAULTS.slide_weighting,
        help="draw slides in proportion to their tissue area, or equally",
    )
    p.add_argument(
        "--loader-workers",
        type=int,
        default=min(4, (os.cpu_count() or 1) - 1),
        help="processes that read patches ahead of the device (0: none)",
    )
    p.add_argument(
        "--region",
        default=None,
        help="train on part of each slide only: 'train', 'test' (the held-out "
        "split, gigasynth.data.regions) or x0,y0,x1,y1 in level-0 px",
    )
    p.add_argument(
        "--min-tissue",
        type=float,
        default=DEFAULTS.min_tissue,
        help="least tissue fraction of a slide patch (0: uniform crops, so the "
        "model also learns background in its true proportion)",
    )
    p.add_argument(
        "--augment",
        choices=["dihedral", "none"],
        default=DEFAULTS.augment,
        help="random flips and 90-degree rotations of each patch",
    )
    p.add_argument("--preset", default="tiny", help=f"model preset ({', '.join(PRESETS)})")
    p.add_argument(
        "--zero-terminal-snr",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="rescale the noise schedule so x_T is pure noise, as sampling "
        "assumes (stored in the model config)",
    )
    p.add_argument(
        "--condition-downsample",
        type=int,
        default=0,
        metavar="F",
        help="train a super-resolution stage: each crop's condition is the crop "
        "area-downsampled by F and upsampled back bilinearly (0: an "
        "unconditioned model); sample it with `gigasynth sample --condition`",
    )
    p.add_argument(
        "--condition-kind",
        choices=("image", "mask"),
        default="image",
        help="with --condition-downsample: the condition is the downsampled crop "
        "(image: a super-resolution stage) or its tissue mask (mask: a cascade's "
        "layout stage, trained on slides with --min-tissue 0 so it sees edges)",
    )
    p.add_argument(
        "--condition-noise",
        type=float,
        default=0.05,
        help="std of the Gaussian noise added to the condition, in [-1, 1] units "
        "(stage errors then do not compound; sampling adds the same)",
    )
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--iterations", type=int, default=DEFAULTS.iterations)
    p.add_argument("--batch", type=int, default=DEFAULTS.batch)
    p.add_argument("--size", type=int, default=DEFAULTS.size, help="training crop size in px")
    p.add_argument(
        "--downsample",
        type=float,
        default=DEFAULTS.downsample,
        help="read slide patches at this downsample of level 0",
    )
    p.add_argument("--lr", type=float, default=DEFAULTS.lr)
    p.add_argument(
        "--lr-decay",
        type=float,
        default=DEFAULTS.lr_decay,
        help="per-iteration LR factor (exponential schedule)",
    )
    p.add_argument(
        "--lr-schedule",
        choices=["exponential", "cosine"],
        default=DEFAULTS.lr_schedule,
        help="LR after warm-up: exponential decay, or a cosine to 5%% of --lr at --iterations",
    )
    p.add_argument(
        "--warmup", type=int, default=DEFAULTS.warmup, help="iterations of linear LR warm-up"
    )
    p.add_argument(
        "--loss-weighting",
        choices=["none", "min-snr"],
        default=DEFAULTS.loss_weighting,
        help="per-sample loss weight: none, or min(SNR, gamma)/SNR (favours high noise levels)",
    )
    p.add_argument("--min-snr-gamma", type=float, default=DEFAULTS.min_snr_gamma)
    p.add_argument(
        "--max-cpu-seconds",
        type=float,
        default=DEFAULTS.max_cpu_seconds,
        help="stop (and save) once this process has used this much CPU time "
        "(0: no limit); for equal-budget comparisons",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=DEFAULTS.max_seconds,
        help="stop (and save) after this many wall-clock seconds of training "
        "(0: no limit); a time budget on a GPU, where CPU time says little",
    )
    p.add_argument("--ema", type=float, default=DEFAULTS.ema)
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    p.add_argument(
        "--checkpointing",
        action="store_true",
        help="recompute each NCA step in backward (memory flat in steps)",
    )
    p.add_argument("--no-bf16", action="store_true", help="train in float32 on CUDA")
    p.add_argument("--save-every", type=int, default=DEFAULTS.save_every)
    p.add_argument(
        "--sample-every",
        type=int,
        default=DEFAULTS.sample_every,
        help="write a sample grid every N",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _warn(message: str) -> None:
    print(f"gigasynth: warning: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from gigasynth.data import open_sources
    from gigasynth.train import train

    model_cfg = replace(preset(args.preset), zero_terminal_snr=args.zero_terminal_snr)
    if args.condition_downsample < 0:
        raise GigasynthError(
            f"--condition-downsample must be >= 1 (or 0: no condition), "
            f"not {args.condition_downsample}"
        )
    if args.condition_kind != "image" and not args.condition_downsample:
        raise GigasynthError("--condition-kind needs --condition-downsample F")
    if args.condition_downsample:
        mask = args.condition_kind == "mask"
        model_cfg = replace(
            model_cfg,
            condition_kind=args.condition_kind,
            condition_channels=1 if mask else model_cfg.image_channels,
            condition_downsample=args.condition_downsample,
            condition_noise=args.condition_noise,
        )
    cfg = TrainConfig(
        iterations=args.iterations,
        batch=args.batch,
        size=args.size,
        lr=args.lr,
        lr_decay=args.lr_decay,
        ema=args.ema,
        seed=args.seed,
        checkpointing=args.checkpointing,
        bf16=not args.no_bf16,
        save_every=args.save_every,
        sample_every=args.sample_every,
        downsample=args.downsample,
        data=list(args.data),
        slide_weighting=args.slide_weighting,
        loader_workers=args.loader_workers,
        region=args.region,
        min_tissue=args.min_tissue,
        augment=args.augment,
        loss_weighting=args.loss_weighting,
        min_snr_gamma=args.min_snr_gamma,
        lr_schedule=args.lr_schedule,
        warmup=args.warmup,
        max_cpu_seconds=args.max_cpu_seconds,
        max_seconds=args.max_seconds,
    )
    if args.loader_workers < 0:
        raise GigasynthError(f"--loader-workers must be >= 0, not {args.loader_workers}")
    sources = open_sources(
        args.data,
        args.downsample,
        strict=args.strict,
        tissue_cache=args.out / "tissue",
        region=args.region,
        min_tissue=args.min_tissue,
        warn=_warn,
    )
    print(f"training on {len(sources)} source{'s' * (len(sources) != 1)}")
    device = pick_device(args.device)
    folder = train(
        model_cfg,
        cfg,
        sources,
        args.out,
        resume=args.resume,
        device=str(device),
        show_progress=not args.quiet,
    )
    print(f"checkpoint: {folder}")
    return 0
