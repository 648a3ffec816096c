"""Argument types and helpers shared by subcommands."""

from __future__ import annotations

import argparse
import re

# Device choice is gigasynth.cluster's; re-exported for the subcommands that import it here.
from gigasynth.errors import GigasynthError

# The flags whose names are not the library field's with dashes (`flag`).
_FLAGS = {
    "width": "--size",
    "height": "--size",
    "tiff_compression": "--compression",
    "preflight": "--no-preflight",
}


def flag(field: str) -> str:
    """The command-line flag for a library field a FieldError names: `--` and the field
    with dashes (`work_dir` -> `--work-dir`), or where the CLI calls it otherwise, that."""
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


def parse_size(text: str, limit: int | None = None) -> tuple[int, int]:
    """'WxH' (or 'N' for a square) -> (width, height), checked against a pixel limit when
    one is given (a slide's limits are gigasynth.synth.check_job's)."""
    m = re.fullmatch(r"\s*(-?\d+)\s*(?:[xX]\s*(-?\d+))?\s*", text)
    if not m:
        raise GigasynthError(f"size {text!r} is not WIDTHxHEIGHT (e.g. 512x384)")
    width = int(m.group(1))
    height = int(m.group(2)) if m.group(2) is not None else width
    if width <= 0 or height <= 0:
        raise GigasynthError(f"size {width}x{height} must be positive")
    if limit is not None and width * height > limit:
        raise GigasynthError(
            f"size {width}x{height} exceeds the limit of {limit:,} pixels (GIGASYNTH_MAX_PIXELS)"
        )
    return width, height


def add_sampler_args(parser: argparse.ArgumentParser, default_steps: int = 50) -> None:
    parser.add_argument(
        "--sampler",
        choices=["ddpm", "ddim"],
        default="ddim",
        help="ddim (deterministic, --steps K) or ddpm (ancestral, all T steps)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=default_steps,
        help=f"DDIM steps K (default {default_steps}; ignored by ddpm)",
    )
    parser.add_argument(
        "--eta", type=float, default=0.0, help="DDIM noise scale (0: deterministic)"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
