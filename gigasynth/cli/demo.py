"""`gigasynth demo`: a small synthetic slide from the bundled model, in the slide formats."""

from __future__ import annotations

import argparse
from pathlib import Path

from gigasynth.cli.synth import ProgressBar
from gigasynth.cluster import default_workers
from gigasynth.synth import SynthSpec, synthesize

DEMO_MODEL = "builtin:tiny-pathology"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="synthesise a small slide with the bundled model "
        "(OME-Zarr, OME-TIFF and a PNG preview)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("gigasynth-demo"),
        help="output folder (its demo.* files are replaced)",
    )
    p.add_argument("--size", type=int, default=512, help="side of the slide in px")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tile", type=int, default=256, help="tile side in px (0: whole image)")
    p.add_argument("--checkpoint", default=DEMO_MODEL, help=f"model (default {DEMO_MODEL})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = SynthSpec(
        args.checkpoint,
        args.size,
        args.size,
        args.seed,
        "ddim",
        args.steps,
        tile=args.tile,
        tiff_compression="jpeg",
    )
    print(
        f"model {args.checkpoint}: a {args.size}x{args.size} px slide, DDIM {args.steps} "
        f"steps, seed {args.seed}, tiles of {args.tile or args.size} px",
        flush=True,
    )
    zarr_path = args.out / "demo.ome.zarr"
    bar = ProgressBar()
    try:
        result = synthesize(
            spec,
            zarr_path,
            ome_tiff=args.out / "demo.ome.tif",
            preview=args.out / "demo.png",
            workers=default_workers(),
            overwrite=True,
            progress=bar,
        )
    finally:
        bar.close()
    assert result.ome_tiff_path is not None and result.preview_path is not None  # both asked
    print(f"done in {result.seconds:.0f} s ({result.mpx_steps_per_s:.2f} Mpx-steps/s):")
    print(f"  {result.ome_tiff_path.resolve()}  QuPath: File > Open..., pick this file")
    print(f"  {result.zarr_path.resolve()}  OME-Zarr (NGFF 0.4): QuPath, napari, large-image")
    print(f"  {result.preview_path.resolve()}  preview: any image viewer")
    return 0
