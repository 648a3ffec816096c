"""`gigasynth synth`: a tiled slide of any size on Dask, as OME-Zarr (+ OME-TIFF, PNG)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from tqdm import tqdm

from gigasynth.cli.common import parse_size
from gigasynth.cluster import connect, default_workers, steady_allocator
from gigasynth.errors import GigasynthError
from gigasynth.synth import JobError, SynthProgress, SynthSpec, check_job, synthesize
from gigasynth.synth.preflight import summary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="synthesise a slide tile by tile (OME-Zarr, OME-TIFF)")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder or builtin:NAME")
    p.add_argument("--size", required=True, help="WIDTHxHEIGHT of the slide in px")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", choices=["ddpm", "ddim"], default="ddim",
                   help="ddim (deterministic, --steps K) or ddpm (ancestral, all T steps)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps K (ignored by ddpm)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM noise scale (0: deterministic)")
    p.add_argument("--tile", type=int, default=512,
                   help="tile side in px (0: the whole image in one task, the reference)")
    p.add_argument("--halo-every", type=int, metavar="K",
                   help="exchange the full cell state every K NCA steps (halo K px) instead "
                        "of once per diffusion step (halo S px)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int,
                       help="tile tasks the embedded Dask cluster runs at once (default: "
                            "one per CPU core, or 1 with a GPU)")
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="use an existing Dask cluster (workers must see the paths)")
    p.add_argument("--out", type=Path, required=True, help="output SLIDE.ome.zarr folder")
    p.add_argument("--ome-tiff", type=Path, help="also write a pyramidal SLIDE.ome.tif")
    p.add_argument("--preview", type=Path, help="also write a small PREVIEW.png")
    p.add_argument("--compression", choices=["jpeg", "zlib", "none"], default="jpeg",
                   help="OME-TIFF compression (default jpeg)")
    p.add_argument("--mpp", type=float,
                   help="µm per pixel: the checkpoint's own (a different value is refused); "
                        "only a checkpoint that records none takes it (default 0.5)")
    p.add_argument("--save-every", type=int, default=1,
                   help="diffusion steps between durable saves of the state (default 1; "
                        "more keeps a third state buffer on disk)")
    p.add_argument("--work-dir", type=Path, metavar="DIR",
                   help="keep the state buffers (6 B/px each, two at a time) in DIR, e.g. a "
                        "scratch disk, instead of beside --out; Dask workers must see DIR "
                        "at the same path")
    p.add_argument("--no-preflight", action="store_true",
                   help="run even when the preflight finds too little free disk")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last saved step")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--condition", type=Path, metavar="IMAGE",
                   help="a conditioned stage's low-resolution input (PNG, JPEG, TIFF) at "
                        "1/F of --size, F the stage's downsample factor")
    p.set_defaults(func=run)


# The spec's fields as this command's flags, for check_job's messages.
FLAGS = {"checkpoint": "--checkpoint", "width": "--size", "height": "--size",
         "seed": "--seed", "sampler": "--sampler", "steps": "--steps", "eta": "--eta",
         "tile": "--tile", "halo_every": "--halo-every", "save_every": "--save-every",
         "mpp": "--mpp", "tiff_compression": "--compression", "condition": "--condition"}

PHASES = {"level0": "level 0", "pyramid": "pyramid", "tiff": "OME-TIFF and preview"}


class ProgressBar:
    """A tqdm bar over all tile tasks of the run, fed by SynthProgress reports."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def __call__(self, p: SynthProgress) -> None:
        if p.phase != "denoise":
            self.close()
            if p.phase != "done":
                print(f"writing the slide: {PHASES.get(p.phase, p.phase)}", flush=True)
            return
        if self.bar is None:
            self.bar = tqdm(total=p.total_steps * p.tiles_total, unit="tile",
                            dynamic_ncols=True, desc="denoise", mininterval=0.5)
        eta = "?" if p.eta_s is None else f"{p.eta_s:.0f}s"
        self.bar.set_postfix_str(f"step {min(p.step + 1, p.total_steps)}/{p.total_steps}, "
                                 f"tiles {p.tiles_done}/{p.tiles_total}, "
                                 f"{p.mpx_steps_per_s:.2f} Mpx-steps/s, ETA {eta}",
                                 refresh=False)
        self.bar.update(p.step * p.tiles_total + p.tiles_done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run(args: argparse.Namespace) -> int:
    steady_allocator()      # before torch's first allocation (transparent huge pages)
    width, height = parse_size(args.size)    # the limits are check_job's
    spec = SynthSpec(args.checkpoint, width, height, args.seed, args.sampler, args.steps,
                     args.eta, args.tile, args.halo_every, args.save_every, args.mpp,
                     args.compression,
                     None if args.condition is None else str(args.condition.absolute()))
    try:    # before a cluster is reached; synthesize runs the checked job as it is
        job = check_job(spec)
    except JobError as exc:
        raise GigasynthError(exc.render(FLAGS)) from None
    bar = ProgressBar()
    workers = default_workers() if args.workers is None else args.workers
    cluster = connect(args.scheduler) if args.scheduler else contextlib.nullcontext()
    try:
        with cluster as client:
            result = synthesize(job, args.out, ome_tiff=args.ome_tiff, preview=args.preview,
                                client=client, workers=workers, resume=args.resume,
                                overwrite=args.overwrite, progress=bar, work_dir=args.work_dir,
                                preflight=not args.no_preflight,
                                on_needs=lambda needs: print(
                                    summary(needs, None if args.scheduler else workers),
                                    flush=True))
    finally:
        bar.close()
    print(f"wrote {result.zarr_path} ({width}x{height}, seed {args.seed}, checkpoint "
          f"{result.checkpoint_sha256[:16]}) in {result.seconds:.1f} s, "
          f"{result.mpx_steps_per_s:.2f} Mpx-steps/s")
    for path in (result.ome_tiff_path, result.preview_path):
        if path is not None:
            print(f"wrote {path}")
    return 0
