"""Preflight: what a job needs (disk per filesystem, memory per engine-tile task), before
any work.

Everything comes from the job's plan by arithmetic, so it costs the same at any size.
Disk, per phase of the run, on the filesystem each part lands on:
- denoising: the state buffers at their peak (two x buffers of 6 B/px with a save every
  step; a third with a longer save interval; full cell states with halo exchanges);
- assembly: the final x buffer, the slide's OME-Zarr (uint8 level 0 and pyramid,
  assembled beside the output) and the OME-TIFF.
The state buffers are uncompressed, so their size is exact (their chunks are the engine
tiles, padded to the tile grid; files to 4 KiB blocks); the OME-Zarr is counted
uncompressed (its zlib level 1 barely shrinks synthetic texture); the TIFF by codec,
from measured ratios. A resumed run already holds part of the state: that part is not
asked for again.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gigasynth.errors import FieldError
from gigasynth.io.ometiff import TIFF_TILE
from gigasynth.io.omezarr import SLIDE_CHUNK
from gigasynth.io.pyramid import pyramid_shapes
from gigasynth.synth.job import Job

BLOCK = 4096
X_BYTES = 3 * 2  # x: 3 channels of float16
CELL_BYTES = 4  # full cell state: float32 per channel
# OME-TIFF bytes per pixel of each level, as written: raw for "none" and "zlib" (an upper
# bound), and for JPEG (quality 90, 4:2:0) what noise-like content measured, its worst
# case (1.34 B/px for all levels: BENCHMARKS.md, "Sizing a job").
TIFF_BYTES_PER_PX = {"none": 3.0, "zlib": 3.0, "jpeg": 1.0}
MARGIN = 64 << 20  # metadata, preview, progress records: per filesystem
# Memory of one engine-tile task: bytes per read-window pixel per state channel, plus a fixed
# part (band activations, oneDNN scratch). Measured growth of a one-thread task of the
# tiny model (24 channels): 266 MiB for a 536 px window, 425 MiB for 1048 px; this
# gives 285 and 532 (BENCHMARKS.md, "Sizing a job").
TASK_BYTES_PER_PX_CHANNEL = 12
TASK_FIXED_BYTES = 192 << 20
PROCESS_BYTES = 500 << 20  # a worker process: Python, torch, zarr, Dask, the model

FreeFn = Callable[[Path], int]


def _padded(length: int, chunk: int) -> int:
    return -(-length // chunk) * chunk


def _chunked(channels: int, item: int, height: int, width: int, chunk: tuple[int, int]) -> int:
    """Bytes of an uncompressed Zarr array on disk: whole chunks, files in 4 KiB blocks."""
    ch, cw = chunk
    chunks = -(-height // ch) * -(-width // cw)
    per_chunk = _padded(channels * item * ch * cw, BLOCK)
    return chunks * per_chunk


@dataclass(frozen=True)
class Needs:
    """Bytes a job needs: disk by part, memory per tile task and per worker process."""

    state_peak: int  # the state buffers at their peak (the work folder)
    final_state: int  # the final x buffer, kept while the slide is written
    slide: int  # OME-Zarr, all levels
    tiff: int  # OME-TIFF (0: none asked)
    task_memory: int  # one tile task at its peak
    pixels: int

    def per_pixel(self, value: int) -> float:
        return value / self.pixels


def estimate(job: Job, tiff_compression: str | None) -> Needs:
    """The needs of `job`; tiff_compression None: no OME-TIFF."""
    spec, plan, config = job.spec, job.plan, job.config
    h, w = spec.height, spec.width
    x = _chunked(3, 2, h, w, plan.chunk)
    cells = _chunked(config.channels, CELL_BYTES, h, w, plan.chunk)
    count = len(job.exchanges)
    during = [(cells if j > 0 else 0) + (x if j == count - 1 else cells) for j in range(count)]
    state_peak = x * (2 if spec.save_every > 1 else 1) + max(during)
    slide = sum(
        _chunked(3, 1, lh, lw, (SLIDE_CHUNK, SLIDE_CHUNK)) for lh, lw in pyramid_shapes(h, w)
    )
    tiff = 0
    if tiff_compression is not None:
        tiff = int(
            sum(_padded(lh, TIFF_TILE) * _padded(lw, TIFF_TILE) for lh, lw in pyramid_shapes(h, w))
            * TIFF_BYTES_PER_PX[tiff_compression]
        )
    side = plan.tile or max(h, w)
    halo = len(job.exchanges[0])
    window = min(side + 2 * halo, h) * min(side + 2 * halo, w)
    task = window * (config.channels + 3) * TASK_BYTES_PER_PX_CHANNEL + TASK_FIXED_BYTES
    return Needs(state_peak, x, slide, tiff, task, h * w)


def _filesystem(path: Path) -> tuple[int, Path]:
    """(device id, nearest existing folder) of a path that may not exist yet."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return os.stat(path).st_dev, path


def disk_free(path: Path) -> int:
    """Bytes free to this user on the filesystem of `path` (shutil.disk_usage)."""
    return shutil.disk_usage(path).free


def gb(value: float) -> str:
    return f"{value / 1e9:,.1f} GB"


class DiskShortage(FieldError):
    """The preflight's refusal: the message names paths (for the command line);
    `needed` and `free` (bytes, the filesystem short by most) let a service word its own."""

    def __init__(self, message: str, needed: int, free: int) -> None:
        super().__init__(
            message, "put the state on a larger disk ([work_dir]) or skip this check ([preflight])"
        )
        self.needed = needed
        self.free = free


def check_disk(
    needs: Needs,
    state_dir: Path,
    out: Path,
    tiff: Path | None,
    held: int = 0,
    free: FreeFn | None = None,
) -> None:
    """Refuse (DiskShortage, one line) when a filesystem lacks the space a phase needs.

    `held`: bytes the state already occupies (a resumed run); `free`: bytes free on the
    filesystem of a folder (default `disk_free`).
    """
    free = free or disk_free
    parts = {"the state": _filesystem(state_dir), "the slide": _filesystem(out)}
    if tiff is not None:
        parts["the TIFF"] = _filesystem(tiff)
    state_only = {"the state": max(0, needs.state_peak - held)}
    assembly = {
        "the state": max(0, needs.final_state - held),
        "the slide": needs.slide,
        "the TIFF": needs.tiff,
    }
    need: dict[int, int] = {}
    for phase in (state_only, assembly):
        on: dict[int, int] = {}
        for part, (dev, _) in parts.items():
            on[dev] = on.get(dev, 0) + phase.get(part, 0)
        for dev, size in on.items():
            need[dev] = max(need.get(dev, 0), size)
    short = []
    worst = (0, 0, 0)  # (deficit, needed, free)
    for dev, size in need.items():
        names = [part for part, (d, _) in parts.items() if d == dev]
        where = parts[names[0]][1]
        available = free(where)
        if size + MARGIN > available:
            short.append(
                f"{' and '.join(names)} need {gb(size + MARGIN)} on {where}, {gb(available)} free"
            )
            worst = max(worst, (size + MARGIN - available, size + MARGIN, available))
    if short:
        raise DiskShortage(
            f"not enough disk space for a {needs.pixels / 1e6:,.0f} Mpx slide: "
            + "; ".join(short)
            + f" (state peak {gb(needs.state_peak)}, slide "
            f"{gb(needs.slide)}, TIFF {gb(needs.tiff)})",
            worst[1],
            worst[2],
        )


def summary(needs: Needs, workers: int | None = None) -> str:
    """One line for the user: disk by part and memory."""
    per = needs.per_pixel
    text = (
        f"preflight: work folder peak {gb(needs.state_peak)} "
        f"({per(needs.state_peak):.1f} B/px), slide {gb(needs.slide)}, "
        f"TIFF {gb(needs.tiff)}, about {needs.task_memory / 2**20:,.0f} MiB per tile task"
    )
    if workers:
        text += (
            f", {(PROCESS_BYTES + workers * needs.task_memory) / 2**30:,.1f} GiB for "
            f"{workers} at once"
        )
    return text
