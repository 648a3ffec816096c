"""From `--data` arguments (files, folders, globs) to patch sources.

A folder holding slides stands for its slides; a folder of plain images is one image
stack (as before). An unreadable slide among several is skipped with a warning that
names it, or is fatal with `strict`; a glob that matches nothing is always an error.
"""

from __future__ import annotations

import glob
import warnings
from collections.abc import Callable
from pathlib import Path

from gigasynth.data.sources import PatchSource, open_source
from gigasynth.errors import GigasynthError

# Formats OpenSlide reads; .tif/.tiff count as slides when OpenSlide recognises them.
SLIDE_SUFFIXES = {".svs", ".ndpi", ".scn", ".mrxs", ".vms", ".vmu", ".svslide", ".bif", ".czi"}
TIFF_SUFFIXES = {".tif", ".tiff"}


def is_slide(path: Path) -> bool:
    """Whether `path` is a whole-slide image (by suffix, or a TIFF OpenSlide recognises)."""
    suffix = path.suffix.lower()
    if suffix in SLIDE_SUFFIXES:
        return True
    if suffix in TIFF_SUFFIXES and path.is_file():
        import openslide

        try:
            return openslide.OpenSlide.detect_format(str(path)) is not None
        except (openslide.OpenSlideError, OSError):
            return True  # a damaged TIFF: let opening it report the problem
    return False


def expand_data(patterns: list[str]) -> list[Path]:
    """Paths of the data: globs expanded, slide folders replaced by their slides, in order."""
    found: list[Path] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = [Path(m) for m in sorted(glob.glob(pattern, recursive=True))]
            if not matches:
                raise GigasynthError(f"no data matches {pattern!r}")
        else:
            matches = [Path(pattern)]
        for path in matches:
            if not path.exists():
                raise GigasynthError(f"data not found: {path}")
            slides = sorted(p for p in path.iterdir() if is_slide(p)) if path.is_dir() else []
            found.extend(slides or [path])
    unique = {p.resolve(): p for p in reversed(found)}
    return [p for p in found if unique[p.resolve()] is p]


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def open_sources(
    patterns: list[str],
    downsample: float = 1.0,
    *,
    strict: bool = False,
    tissue_cache: Path | None = None,
    region: str | None = None,
    min_tissue: float = 0.5,
    warn: Callable[[str], None] = _warn,
) -> list[PatchSource]:
    """Sources for paths, folders and globs.

    An unreadable slide (or one without tissue) is skipped with `warn(message)` unless
    `strict`; when nothing readable is left, the first problem is the error.
    `region` and `min_tissue` apply to slides (gigasynth.data.sources.open_source).
    """
    sources: list[PatchSource] = []
    problems: list[str] = []
    for path in expand_data(patterns):
        try:
            sources.append(
                open_source(
                    path,
                    downsample,
                    tissue_cache=tissue_cache,
                    region=region,
                    min_tissue=min_tissue,
                )
            )
        except GigasynthError as exc:
            if strict or not is_slide(path):
                raise
            problems.append(str(exc))
    if not sources:
        more = f" (and {len(problems) - 1} more unusable slides)" if len(problems) > 1 else ""
        raise GigasynthError(problems[0] + more)
    for problem in problems:
        warn(f"skipping a slide: {problem}")
    return sources
