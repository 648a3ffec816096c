"""The `gigasynth` command: one module per subcommand, errors as one plain line."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from gigasynth import __version__
from gigasynth.cli.common import flag
from gigasynth.errors import FieldError, GigasynthError

# Subcommand modules under gigasynth.cli; each defines register(subparsers).
COMMANDS = [
    "info",
    "train",
    "sample",
    "synth",
    "demo",
    "serve",
    "token",
    "eval",
    "dataset",
    "bench",
]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gigasynth",
        description="Synthetic gigapixel pathology slides from NCA diffusion models.",
    )
    parser.add_argument("--version", action="version", version=f"gigasynth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"gigasynth.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:  # building the parser imports the commands, which read GIGASYNTH_* limits
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except GigasynthError as exc:  # a FieldError's fields as this command's flags
        message = exc.render(flag) if isinstance(exc, FieldError) else str(exc)
        print(f"gigasynth: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gigasynth: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(
            f"gigasynth: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 1
