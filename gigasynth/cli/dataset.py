"""`gigasynth dataset`: a synthetic training set of patches with provenance, resumable."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from gigasynth.cli.common import add_sampler_args, parse_size
from gigasynth.dataset.spec import FORMATS, MAX_PATCH_PIXELS, DatasetSpec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dataset",
        help="generate a synthetic patch dataset (PNG folders or tar shards)",
        description="Patch i is a pure function of the checkpoint, --seed, i and the sampler "
        "settings. Run the same command again to resume a killed run. With a cascade for "
        "--checkpoint, patch i is a cascade run on its own layout: a generated tissue mask "
        "seeded by mix(seed, i) (a 'generated' cascade; any --size), or "
        "layout i mod n of --layouts (each patch its layout's size); its tissue mask is "
        "written beside it.",
    )
    p.add_argument(
        "--checkpoint", required=True, help="checkpoint folder, builtin:NAME or a cascade"
    )
    p.add_argument("--count", type=int, required=True, help="number of patches")
    p.add_argument(
        "--size",
        help="patch side in px (or WIDTHxHEIGHT); with --layouts each patch's size is its "
        "layout's, and a --size given must be every layout's",
    )
    p.add_argument(
        "--layouts",
        type=Path,
        help="a cascade's layouts: a folder of layout images (grey: tissue masks, colour: "
        "RGB layouts), cycled through by patch index in name order",
    )
    p.add_argument("--out", type=Path, required=True, help="dataset folder")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (patch i: mix(seed, i))")
    add_sampler_args(p)
    # Unset unless given: a checkpoint then gets ddim and 50 steps, a cascade its stages'.
    p.set_defaults(sampler=None, steps=None)
    p.add_argument(
        "--batch",
        type=int,
        default=1,
        help="patches denoised together; part of the dataset's identity (default 1)",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="png",
        help="png: shard folders of PNGs; tar: webdataset tar shards",
    )
    p.add_argument("--shard-size", type=int, default=1000, help="patches per shard")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        default=1,
        help="1: this process; more: an embedded Dask LocalCluster",
    )
    where.add_argument("--scheduler", help="address of a Dask scheduler (tcp://host:8786)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace another dataset in --out (the same one is resumed)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def canonical_command(args: argparse.Namespace, spec: DatasetSpec) -> str:
    """A command that makes this dataset again (where it runs does not change the bytes)."""
    words = ["gigasynth", "dataset", "--checkpoint", args.checkpoint, "--count", str(spec.count)]
    if args.layouts is not None:
        words += ["--layouts", str(args.layouts)]
    else:
        words += ["--size", f"{spec.width}x{spec.height}"]
    words += ["--out", str(args.out), "--seed", str(spec.seed)]
    if spec.cascade is None:
        words += ["--sampler", spec.sampler, "--steps", str(spec.steps)]
    words += ["--eta", str(spec.eta)]
    if spec.cascade is None:
        words += ["--batch", str(spec.batch)]
    words += ["--format", spec.format, "--shard-size", str(spec.shard_size)]
    words += ["--device", spec.device]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    from gigasynth.dataset import make_dataset

    size = None if args.size is None else parse_size(args.size, MAX_PATCH_PIXELS)
    result = make_dataset(
        args.checkpoint,
        args.out,
        args.count,
        size,
        seed=args.seed,
        sampler=args.sampler,
        steps=args.steps,
        eta=args.eta,
        batch=args.batch,
        format=args.format,
        shard_size=args.shard_size,
        layouts=args.layouts,
        workers=args.workers,
        scheduler=args.scheduler,
        device=args.device,
        overwrite=args.overwrite,
        command=lambda spec: canonical_command(args, spec),
        progress=not args.quiet,
    )
    spec = result.spec
    if result.made_shards == 0:
        print(f"{result.out} already holds the complete dataset ({spec.count} patches)")
    else:
        print(
            f"wrote {spec.count} patches in {spec.shards} {spec.format} shards to {result.out}"
            f" (made {result.made_patches} in {result.seconds:.1f} s, "
            f"{result.patches_per_second:.2f} patches/s on {spec.device})"
        )
    return 0
