"""`gigasynth eval`: FID, KID, SWD of generated vs real images; seam check of tiled outputs."""

from __future__ import annotations

import argparse
import json

import numpy as np

from gigasynth.cli.common import pick_device
from gigasynth.errors import GigasynthError

INPUT_HELP = ("image folder, file.npz[:ARRAY], slide (tissue crops), OME-Zarr output "
              "(crops of level 0) or image file")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="measure quality: FID/KID/SWD, and seams of tiled outputs")
    p.add_argument("--real", help=f"reference images: {INPUT_HELP}")
    p.add_argument("--fake", help=f"generated images: {INPUT_HELP}")
    p.add_argument("--n", type=int, default=1000,
                   help="samples per side (fewer if a stack holds fewer; default 1000)")
    p.add_argument("--crop", type=int,
                   help="crop size in px (default: whole images of stacks, 64 for slides/Zarr)")
    p.add_argument("--metrics", default="fid,kid,swd", help="comma list of fid, kid, swd")
    p.add_argument("--downsample", type=float, default=1.0,
                   help="read slide crops at this downsample of level 0")
    p.add_argument("--seed", type=int, default=0, help="seed of crop positions and SWD")
    p.add_argument("--seams", action="store_true",
                   help="seam check of --fake (an OME-Zarr output or image) for --tile")
    p.add_argument("--tile", type=int, help="tile size in px the output was generated with")
    p.add_argument("--windows", type=int, default=64, help="seam check: windows per direction")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (Inception features)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _seam_lines(stats: list) -> list[str]:
    return [
        f"seams {s.direction}: |step| across borders {s.border_mean:.2f} vs inside "
        f"{s.inside_mean:.2f} (ratio {s.ratio:.2f}); shift {s.border_shift:.2f} vs "
        f"{s.inside_shift:.2f} (z {s.z:.1f}); n={s.pairs} pixel pairs, {s.windows} windows"
        for s in stats
    ]


def run(args: argparse.Namespace) -> int:
    from gigasynth.eval import compare_sets, format_metrics, load_images, open_regions, seam_check

    if args.fake is None:
        raise GigasynthError("--fake is required")
    if args.real is None and not args.seams:
        raise GigasynthError("give --real REAL (metrics) and/or --seams --tile PX")
    report: dict = {"fake": args.fake}
    lines: list[str] = []
    if args.seams:
        if args.tile is None:
            raise GigasynthError("--seams needs --tile PX (the tile size of the output)")
        stats = seam_check(open_regions(args.fake), args.tile, args.windows, seed=args.seed)
        report["seams"] = [s.to_dict() for s in stats]
        report["tile"] = args.tile
        lines += _seam_lines(stats)
    if args.real is not None:
        metrics = tuple(m.strip().lower() for m in args.metrics.split(",") if m.strip())
        real = load_images(args.real, args.n, args.crop,
                           np.random.default_rng([args.seed, 0]), args.downsample)
        fake = load_images(args.fake, args.n, args.crop,
                           np.random.default_rng([args.seed, 1]), args.downsample)
        result = compare_sets(real, fake, metrics, str(pick_device(args.device)), args.seed)
        report.update(result, real=args.real, size=list(real.shape[1:3]))
        lines += format_metrics(result)
    print(json.dumps(report, indent=2) if args.json else "\n".join(lines))
    return 0
