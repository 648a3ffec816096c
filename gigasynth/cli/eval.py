"""`gigasynth eval`: FID, KID, SWD of generated vs real images; slide mode (held-out region vs
a synthetic field at several zooms); seam check of tiled outputs."""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict

import numpy as np

from gigasynth.cluster.devices import pick_device
from gigasynth.errors import GigasynthError
from gigasynth.eval.slide import (
    BOOTSTRAP,
    DEFAULT_CROP,
    DEFAULT_N,
    SlideEvaluation,
    summarize_fields,
    summary_lines,
)

SLIDE_OPTIONS = (
    "scales",
    "real_region",
    "real_downsample",
    "fake_mpp",
    "bootstrap",
    "report",
    "copies",
)

INPUT_HELP = (
    "image folder, file.npz[:ARRAY], slide (tissue crops), OME-Zarr output "
    "(crops of level 0) or image file"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="measure quality: FID/KID/SWD, slide-scale evaluation "
        "at several zooms, and seams of tiled outputs",
    )
    p.add_argument("--real", help=f"reference images: {INPUT_HELP}; slide mode: a slide")
    p.add_argument(
        "--fake",
        nargs="+",
        help=f"generated images: {INPUT_HELP}; slide mode takes several (fields drawn with "
        "different seeds) and reports their mean and spread",
    )
    p.add_argument(
        "--n",
        type=int,
        help="samples per side (fewer if a stack holds fewer; default 1000; slide "
        "mode: crops per side and scale, default 256)",
    )
    p.add_argument(
        "--crop",
        type=int,
        help="crop size in px (default: whole images of stacks, 64 for slides/Zarr)",
    )
    slide = p.add_argument_group(
        "slide mode (on when any of these is given)",
        "a region of --real (a slide; by default its held-out test region, background "
        "included) against --fake (an OME-Zarr output, an image, a folder of patches or an "
        ".npz) at one pixel size: per zoom, KID with a bootstrap interval and FID on --n "
        "--crop px crops of each side (the crop must fit the region at every zoom); "
        "luminance energy per octave band (synthetic / real); H&E optical density and "
        "background fraction",
    )
    slide.add_argument(
        "--scales",
        help="comma list of zooms as downsamples of the fake's "
        "pixel size, by area averaging (default: those of 1,4,16 the real region "
        "holds a crop at)",
    )
    slide.add_argument(
        "--real-region", help="train, val, test (default) or x0,y0,x1,y1 in level-0 px of --real"
    )
    slide.add_argument(
        "--real-downsample",
        type=float,
        help="read --real at this downsample of level 0 (default: the fake's "
        "µm/px over the slide's)",
    )
    slide.add_argument(
        "--fake-mpp",
        type=float,
        help="µm per pixel of --fake (default: from its OME-Zarr metadata)",
    )
    slide.add_argument(
        "--bootstrap", type=int, help=f"KID bootstrap resamples (default {BOOTSTRAP})"
    )
    slide.add_argument("--report", help="write a PNG: crops per zoom and the band ratios")
    slide.add_argument(
        "--copies",
        metavar="REGION",
        help="also check the fields for copies of this region of --real (the model's "
        "training region, e.g. train): nearest-neighbour distances of synthetic tissue "
        "crops against the region's own",
    )
    p.add_argument(
        "--metrics",
        default="fid,kid,swd",
        help="comma list of fid, kid, swd (slide mode always gives KID and FID)",
    )
    p.add_argument(
        "--downsample",
        type=float,
        help="read slide crops at this downsample of level 0 (default 1; slide "
        "mode: --real-downsample)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of crop positions, SWD and the KID bootstrap"
    )
    p.add_argument(
        "--seams",
        action="store_true",
        help="seam check of --fake (an OME-Zarr output or image) for --tile",
    )
    p.add_argument("--tile", type=int, help="tile size in px the output was generated with")
    p.add_argument("--windows", type=int, default=64, help="seam check: windows per direction")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (Inception features)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (slide mode: every figure, per scale, band "
        "and side) instead of the summary lines",
    )
    p.set_defaults(func=run)


def _seam_lines(stats: list) -> list[str]:
    return [
        f"seams {s.direction}: |step| across borders {s.border_mean:.2f} vs inside "
        f"{s.inside_mean:.2f} (ratio {s.ratio:.2f}); shift {s.border_shift:.2f} vs "
        f"{s.inside_shift:.2f} (z {s.z:.1f}); n={s.pairs} pixel pairs, {s.windows} windows"
        for s in stats
    ]


def parse_scales(text: str) -> tuple[int, ...]:
    """'1,4,16' -> (1, 4, 16): whole zooms of at least 1."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(re.fullmatch(r"[0-9]+", p) and int(p) >= 1 for p in parts):
        raise GigasynthError(
            f"--scales {text!r}: expected whole numbers of at least 1, e.g. 1,4,16"
        )
    return tuple(int(p) for p in parts)


def _evaluate_slide(args: argparse.Namespace) -> list[SlideEvaluation]:
    from gigasynth.eval.slide import evaluate_slides

    if args.downsample is not None:
        raise GigasynthError("--downsample reads patches; in slide mode give --real-downsample")

    return evaluate_slides(
        args.real,
        args.fake,
        scales=parse_scales(args.scales) if args.scales is not None else None,
        n=DEFAULT_N if args.n is None else args.n,
        crop=DEFAULT_CROP if args.crop is None else args.crop,
        seed=args.seed,
        real_region=args.real_region or "test",
        real_downsample=args.real_downsample,
        fake_mpp=args.fake_mpp,
        bootstrap=BOOTSTRAP if args.bootstrap is None else args.bootstrap,
        device=str(pick_device(args.device)),
    )


def run(args: argparse.Namespace) -> int:
    from gigasynth.eval import compare_sets, format_metrics, load_images, open_regions, seam_check

    if args.fake is None:
        raise GigasynthError("--fake is required")
    if args.real is None and not args.seams:
        raise GigasynthError("give --real REAL (metrics) and/or --seams --tile PX")
    slide_mode = any(getattr(args, name) is not None for name in SLIDE_OPTIONS)
    if len(args.fake) > 1 and not slide_mode:
        raise GigasynthError(
            "several --fake fields are compared in slide mode only (give --scales or --real-region)"
        )
    fake = args.fake[0]
    report: dict = {"fake": fake}
    lines: list[str] = []
    if args.seams:
        if args.tile is None:
            raise GigasynthError("--seams needs --tile PX (the tile size of the output)")
        if len(args.fake) > 1:
            raise GigasynthError("--seams checks one --fake at a time")
        stats = seam_check(open_regions(fake), args.tile, args.windows, seed=args.seed)
        report["seams"] = [s.to_dict() for s in stats]
        report["tile"] = args.tile
        lines += _seam_lines(stats)
    if slide_mode:
        if args.real is None:
            raise GigasynthError("slide mode needs --real SLIDE")
        evaluations = _evaluate_slide(args)
        if len(evaluations) == 1:
            report.update(evaluations[0].to_dict())
            lines += evaluations[0].lines()
        else:
            summary = summarize_fields(evaluations)
            report = {"fields": [e.to_dict() for e in evaluations], "summary": summary}
            for e in evaluations:
                lines += e.lines()
            lines += summary_lines(summary)
        if args.copies is not None:
            from gigasynth.eval.slide import check_copies

            copies = check_copies(
                args.real,
                args.fake,
                region=args.copies,
                seed=args.seed,
                fake_mpp=args.fake_mpp,
                real_downsample=args.real_downsample,
            )
            report["copies"] = asdict(copies)
            lines.append(copies.line())
        if args.report is not None:
            from gigasynth.eval.report import write_report

            write_report(evaluations[0], args.report)
            report["report"] = args.report
            lines.append(f"report: {args.report} (of {evaluations[0].fake})")
    elif args.real is not None:
        metrics = tuple(m.strip().lower() for m in args.metrics.split(",") if m.strip())
        n = 1000 if args.n is None else args.n
        downsample = 1.0 if args.downsample is None else args.downsample
        real = load_images(
            args.real, n, args.crop, np.random.default_rng([args.seed, 0]), downsample
        )
        fake = load_images(fake, n, args.crop, np.random.default_rng([args.seed, 1]), downsample)
        result = compare_sets(real, fake, metrics, str(pick_device(args.device)), args.seed)
        report.update(result, real=args.real, size=list(real.shape[1:3]))
        lines += format_metrics(result)
    print(json.dumps(report, indent=2) if args.json else "\n".join(lines))
    return 0
