"""`gigasynth bench`: NCA update throughput against the device's measured limits."""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from gigasynth.bench import format_report, run_bench
from gigasynth.bench.engine import engine_efficiency
from gigasynth.cluster import default_workers
from gigasynth.cluster.devices import pick_device
from gigasynth.config import PRESETS
from gigasynth.errors import GigasynthError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="measure the NCA update against the device's matmul and copy limits"
    )
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument(
        "--preset",
        action="append",
        choices=sorted(PRESETS),
        help="preset to measure (repeatable; default: all)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--quick",
        action="store_true",
        help="toy sizes: checks that every stage runs, measures nothing useful",
    )
    p.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: its own)")
    p.add_argument(
        "--engine",
        metavar="MODEL",
        help="also measure tiled synthesis of this checkpoint (builtin:NAME or a folder) "
        "against the model's own rate in the same run; alone unless --preset is given",
    )
    p.add_argument(
        "--workers", type=int, help="tile tasks at once for --engine (default: one per core)"
    )
    p.add_argument("--block-steps", type=int, help="diffusion steps per task for --engine")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    if args.threads is not None:
        if args.threads < 1:
            raise GigasynthError(f"--threads must be at least 1, not {args.threads}")
        torch.set_num_threads(args.threads)
    presets = args.preset or ([] if args.engine else list(PRESETS))
    log = lambda line: print(f"bench: {line}", file=sys.stderr, flush=True)  # noqa: E731
    result = run_bench(device, presets, quick=args.quick, log=log)
    if args.engine is not None:
        workers = default_workers() if args.workers is None else args.workers
        if workers < 1:
            raise GigasynthError(f"--workers must be at least 1, not {workers}")
        log(f"engine: {args.engine}, {workers} workers")
        kind = "quick" if args.quick else device.type
        result["engine"] = engine_efficiency(args.engine, kind, workers, args.block_steps)
        result["load_average_end"] = list(os.getloadavg())
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0
