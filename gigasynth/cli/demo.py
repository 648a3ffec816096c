"""`gigasynth demo`: a small synthetic slide from the bundled cascade, in the slide formats.

The bundled cascade (`builtin:skin`) draws a tissue mask, tissue at 4 µm/px on it, and
1 µm/px detail on that; a single model (`--checkpoint builtin:tiny-pathology`) draws
one texture everywhere, as before the cascade existed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gigasynth.cascade import is_cascade, load_cascade
from gigasynth.cascade.synth import CascadeSettings, synthesize_cascade
from gigasynth.cli.synth import CascadeBar, ProgressBar
from gigasynth.cluster import default_workers
from gigasynth.errors import GigasynthError
from gigasynth.synth import SynthResult, SynthSpec, synthesize

DEMO_MODEL = "builtin:skin"
DEMO_SIZE = 2048  # px at the cascade's 0.998 µm/px: a 2 mm x 2 mm field
SINGLE_MODEL_STEPS = 50
DEMO_ZARR = "demo.ome.zarr"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="synthesise a small slide with the bundled cascade "
        "(OME-Zarr with its tissue label, OME-TIFF and a PNG preview)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("gigasynth-demo"),
        help="output folder (its demo.* files are replaced)",
    )
    p.add_argument(
        "--size",
        type=int,
        default=DEMO_SIZE,
        help=f"side of the slide in px (default {DEMO_SIZE})",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"DDIM steps of a single model (default {SINGLE_MODEL_STEPS}); a cascade's "
        "stages bring their own",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tile", type=int, default=512, help="tile side in px (0: whole image)")
    p.add_argument(
        "--checkpoint", default=DEMO_MODEL, help=f"cascade or model (default {DEMO_MODEL})"
    )
    p.set_defaults(func=run)


def _outputs(out: Path) -> dict[str, Any]:
    """What both kinds of run write beside the OME-Zarr, and how: the demo's files in
    `out`, replaced, on every core."""
    return {
        "ome_tiff": out / "demo.ome.tif",
        "preview": out / "demo.png",
        "workers": default_workers(),
        "overwrite": True,
    }


def _run_cascade(args: argparse.Namespace, out: Path) -> SynthResult:
    if args.steps is not None:
        raise GigasynthError(
            f"--steps does not apply to cascade {args.checkpoint}: its stages bring their own"
        )
    cascade = load_cascade(args.checkpoint)
    width_mm = args.size * cascade.mpp / 1000
    print(
        f"cascade {args.checkpoint}: a {args.size}x{args.size} px slide "
        f"({width_mm:.2f} mm wide at {cascade.mpp:.3g} µm/px) in {len(cascade.stages)} "
        f"stages from a generated tissue mask, seed {args.seed}",
        flush=True,
    )
    bar = CascadeBar()
    try:
        return synthesize_cascade(
            cascade,
            None,
            out / DEMO_ZARR,
            CascadeSettings(seed=args.seed, tile=args.tile),
            size=(args.size, args.size),
            progress=bar,
            **_outputs(out),
        )
    finally:
        bar.close()


def _run_model(args: argparse.Namespace, out: Path) -> SynthResult:
    steps = SINGLE_MODEL_STEPS if args.steps is None else args.steps
    spec = SynthSpec(
        args.checkpoint,
        args.size,
        args.size,
        args.seed,
        "ddim",
        steps,
        tile=args.tile,
        tiff_compression="jpeg",
    )
    print(
        f"model {args.checkpoint}: a {args.size}x{args.size} px slide, DDIM {steps} "
        f"steps, seed {args.seed}, tiles of {args.tile or args.size} px",
        flush=True,
    )
    bar = ProgressBar()
    try:
        return synthesize(
            spec,
            out / DEMO_ZARR,
            progress=bar,
            **_outputs(out),
        )
    finally:
        bar.close()


def run(args: argparse.Namespace) -> int:
    cascade = is_cascade(args.checkpoint)
    result = (_run_cascade if cascade else _run_model)(args, args.out)
    assert result.ome_tiff_path is not None and result.preview_path is not None  # both asked
    print(f"done in {result.seconds:.0f} s:")
    print(f"  {result.ome_tiff_path.resolve()}  QuPath: File > Open..., pick this file")
    label = " with its tissue label (labels/tissue)" if cascade else ""
    print(
        f"  {result.zarr_path.resolve()}  OME-Zarr (NGFF 0.4){label}: QuPath, napari, large-image"
    )
    print(f"  {result.preview_path.resolve()}  preview: any image viewer")
    return 0
