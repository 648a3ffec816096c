"""`gigasynth bench`: NCA update throughput against the device's measured limits."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from gigasynth.bench import format_report, run_bench
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    if args.threads is not None:
        if args.threads < 1:
            raise GigasynthError(f"--threads must be at least 1, not {args.threads}")
        torch.set_num_threads(args.threads)
    presets = args.preset or list(PRESETS)
    result = run_bench(
        device,
        presets,
        quick=args.quick,
        log=lambda line: print(f"bench: {line}", file=sys.stderr, flush=True),
    )
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0
