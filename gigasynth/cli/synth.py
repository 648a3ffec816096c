"""`gigasynth synth`: a tiled slide of any size on Dask, as OME-Zarr (+ OME-TIFF, PNG)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from tqdm import tqdm

from gigasynth.cascade import is_cascade, load_cascade
from gigasynth.cascade.synth import CascadeProgress, CascadeSettings, synthesize_cascade
from gigasynth.cli.common import parse_size
from gigasynth.cluster import connect, default_workers, steady_allocator
from gigasynth.errors import GigasynthError
from gigasynth.synth import SynthProgress, SynthSpec, check_job, synthesize
from gigasynth.synth.job import check_block_steps
from gigasynth.synth.preflight import summary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="synthesise a slide tile by tile (OME-Zarr, OME-TIFF)")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint folder or builtin:NAME, or a cascade (cascade.json or "
        "its folder: give --layout)",
    )
    p.add_argument(
        "--size",
        help="WIDTHxHEIGHT of the slide in px (a cascade given --layout: the layout's "
        "size times its factors)",
    )
    p.add_argument("--seed", type=int, default=0)
    # Unset unless given: a single model then gets SynthSpec's defaults (ddim, 50 steps);
    # a cascade refuses them (its stages carry their own), as `gigasynth dataset` does.
    p.add_argument(
        "--sampler",
        choices=["ddpm", "ddim"],
        help="ddim (deterministic, --steps K; the default) or ddpm (ancestral, all T steps)",
    )
    p.add_argument("--steps", type=int, help="DDIM steps K (default 50; ignored by ddpm)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM noise scale (0: deterministic)")
    p.add_argument(
        "--tile",
        type=int,
        default=512,
        help="tile side in px (0: the whole image in one task, the reference)",
    )
    p.add_argument(
        "--halo-every",
        type=int,
        metavar="K",
        help="exchange the full cell state every K NCA steps (halo K px) instead "
        "of once per diffusion step (halo S px)",
    )
    p.add_argument(
        "--block-steps",
        type=int,
        metavar="K",
        help="diffusion steps per tile task, the halo K times one step's reach (same "
        "bytes for every K; default: chosen for the workers' device)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        help="tile tasks the embedded Dask cluster runs at once (default: "
        "one per CPU core, or 1 with a GPU)",
    )
    where.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="use an existing Dask cluster (workers must see the paths)",
    )
    p.add_argument("--out", type=Path, required=True, help="output SLIDE.ome.zarr folder")
    p.add_argument("--ome-tiff", type=Path, help="also write a pyramidal SLIDE.ome.tif")
    p.add_argument("--preview", type=Path, help="also write a small PREVIEW.png")
    p.add_argument(
        "--compression",
        choices=["jpeg", "zlib", "none"],
        default="jpeg",
        help="OME-TIFF compression (default jpeg)",
    )
    p.add_argument(
        "--mpp",
        type=float,
        help="µm per pixel: the checkpoint's own (a different value is refused); "
        "only a checkpoint that records none takes it (default 0.5)",
    )
    p.add_argument(
        "--save-every",
        type=int,
        default=1,
        help="diffusion steps between durable saves of the state (default 1; "
        "more keeps a third state buffer on disk)",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        metavar="DIR",
        help="keep the state buffers (6 B/px each, two at a time) in DIR, e.g. a "
        "scratch disk, instead of beside --out; Dask workers must see DIR "
        "at the same path",
    )
    p.add_argument(
        "--no-preflight",
        action="store_true",
        help="run even when the preflight finds too little free disk",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its last saved step"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument(
        "--condition",
        type=Path,
        metavar="IMAGE",
        help="a conditioned stage's low-resolution input (PNG, JPEG, TIFF) at "
        "1/F of --size, F the stage's downsample factor",
    )
    p.add_argument(
        "--layout",
        type=Path,
        metavar="IMAGE|SLIDE",
        help="a cascade's layout: a tissue mask (a grey image, light = tissue) at "
        "the mask stage's input resolution, an RGB image at the first image "
        "stage's, or a slide (read at it through OpenSlide); without it a cascade "
        "that generates its layout draws a tissue mask for --size",
    )
    p.add_argument(
        "--layout-kind",
        choices=("auto", "mask", "image"),
        default="auto",
        help="how --layout is taken: auto (grey images are masks; colour images "
        "and slides are images), mask (an RGB image or slide becomes its tissue "
        "mask) or image",
    )
    p.set_defaults(func=run)


# The spec's fields as this command's flags, for check_job's messages.
PHASES = {"level0": "level 0", "pyramid": "pyramid", "tiff": "OME-TIFF and preview"}


class ProgressBar:
    """A tqdm bar over all tile tasks of the run, fed by SynthProgress reports."""

    def __init__(self, desc: str = "denoise") -> None:
        self.bar: tqdm | None = None
        self.desc = desc

    def __call__(self, p: SynthProgress) -> None:
        if p.phase != "denoise":
            self.close()
            if p.phase != "done":
                print(f"writing the slide: {PHASES.get(p.phase, p.phase)}", flush=True)
            return
        if self.bar is None:
            self.bar = tqdm(
                total=p.total_steps * p.tiles_total,
                unit="tile",
                dynamic_ncols=True,
                desc=self.desc,
                mininterval=0.5,
            )
        eta = "?" if p.eta_s is None else f"{p.eta_s:.0f}s"
        self.bar.set_postfix_str(
            f"step {min(p.step + 1, p.total_steps)}/{p.total_steps}, "
            f"tiles {p.tiles_done}/{p.tiles_total}, "
            f"{p.mpx_steps_per_s:.2f} Mpx-steps/s, ETA {eta}",
            refresh=False,
        )
        self.bar.update(round(p.steps_done * p.tiles_total) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run(args: argparse.Namespace) -> int:
    steady_allocator()  # before torch's first allocation (transparent huge pages)
    if is_cascade(args.checkpoint):
        return run_cascade(args)
    if args.layout is not None:
        raise GigasynthError(
            f"--layout needs a cascade (cascade.json); {args.checkpoint} is a single model"
        )
    if args.size is None:
        raise GigasynthError("--size WIDTHxHEIGHT is required (except for a cascade)")
    width, height = parse_size(args.size)  # the limits are check_job's
    given = {"sampler": args.sampler, "steps": args.steps}
    spec = SynthSpec(
        args.checkpoint,
        width,
        height,
        seed=args.seed,
        eta=args.eta,
        tile=args.tile,
        halo_every=args.halo_every,
        save_every=args.save_every,
        mpp=args.mpp,
        tiff_compression=args.compression,
        condition=None if args.condition is None else str(args.condition.absolute()),
        **{name: value for name, value in given.items() if value is not None},
    )
    job = check_job(spec)  # before a cluster is reached; synthesize runs it as it is
    if args.block_steps is not None:
        check_block_steps(job, args.block_steps)
    bar = ProgressBar()
    workers = default_workers() if args.workers is None else args.workers
    cluster = connect(args.scheduler) if args.scheduler else contextlib.nullcontext()
    try:
        with cluster as client:
            result = synthesize(
                job,
                args.out,
                ome_tiff=args.ome_tiff,
                preview=args.preview,
                client=client,
                workers=workers,
                resume=args.resume,
                overwrite=args.overwrite,
                progress=bar,
                work_dir=args.work_dir,
                preflight=not args.no_preflight,
                block_steps=args.block_steps,
                on_needs=lambda needs: print(
                    summary(needs, None if args.scheduler else workers), flush=True
                ),
            )
    finally:
        bar.close()
    print(
        f"wrote {result.zarr_path} ({width}x{height}, seed {args.seed}, checkpoint "
        f"{result.checkpoint_sha256[:16]}) in {result.seconds:.1f} s, "
        f"{result.mpx_steps_per_s:.2f} Mpx-steps/s"
    )
    for path in (result.ome_tiff_path, result.preview_path):
        if path is not None:
            print(f"wrote {path}")
    return 0


class CascadeBar:
    """Names each stage when it starts, then a ProgressBar of its tile tasks."""

    def __init__(self) -> None:
        self.stage = 0
        self.bar = ProgressBar()

    def __call__(self, p: CascadeProgress) -> None:
        if p.stage != self.stage:
            self.bar.close()
            self.stage = p.stage
            self.bar = ProgressBar(f"stage {p.stage}/{p.stages}")
            print(
                f"stage {p.stage}/{p.stages}: {p.checkpoint}, {p.width}x{p.height} px at "
                f"{p.mpp:.4g} µm/px",
                flush=True,
            )
        self.bar(p.progress)

    def close(self) -> None:
        self.bar.close()


def run_cascade(args: argparse.Namespace) -> int:
    """`gigasynth synth --checkpoint CASCADE --layout IMAGE|SLIDE`."""
    for flag, value in (
        ("--condition", args.condition),
        ("--mpp", args.mpp),
        ("--sampler", args.sampler),
        ("--steps", args.steps),
    ):
        if value is not None:
            raise GigasynthError(
                f"{flag} does not apply to a cascade: the layout and the stages fix the "
                "slide's inputs and µm/px, and each stage carries its sampler and steps"
            )
    if args.size is not None and args.layout is not None:
        raise GigasynthError(
            "--size does not apply with --layout: the layout's size times the "
            "cascade's factors is the slide's"
        )
    cascade = load_cascade(args.checkpoint)
    if args.layout is None and cascade.layout != "generated":
        raise GigasynthError(
            f"{args.checkpoint} is a cascade without a layout generator: give its "
            "layout (--layout IMAGE|SLIDE)"
        )
    settings = CascadeSettings(
        args.seed, args.eta, args.tile, args.halo_every, args.save_every, args.compression
    )
    bar = CascadeBar()
    workers = default_workers() if args.workers is None else args.workers
    cluster = connect(args.scheduler) if args.scheduler else contextlib.nullcontext()
    try:
        with cluster as client:
            result = synthesize_cascade(
                cascade,
                args.layout,
                args.out,
                settings,
                size=None if args.size is None else parse_size(args.size),
                layout_kind=args.layout_kind,
                ome_tiff=args.ome_tiff,
                preview=args.preview,
                client=client,
                workers=workers,
                resume=args.resume,
                overwrite=args.overwrite,
                progress=bar,
                work_dir=args.work_dir,
                preflight=not args.no_preflight,
                block_steps=args.block_steps,
            )
    finally:
        bar.close()
    print(
        f"wrote {result.zarr_path} ({len(cascade.stages)} stages, {cascade.mpp:.4g} µm/px, "
        f"seed {args.seed}) in {result.seconds:.1f} s"
    )
    for path in (result.ome_tiff_path, result.preview_path):
        if path is not None:
            print(f"wrote {path}")
    return 0
