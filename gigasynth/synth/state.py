"""The work folder `<out>.work/`: float32 state buffers and the durable progress record.

Buffers are Zarr arrays named by what they hold: `x-000007.zarr` is x after 7
diffusion steps, `cells-000008-1.zarr` the full cell state after exchange 1 of step 8.
Their content is a pure function of the job (I3, I5), so a task that runs twice (a
retried task, a straggler of a cancelled run) writes the same bytes. One state chunk
is one tile: one writer per chunk.

`progress.json` names the job and the last saved step. A buffer it names is never
written again, so a crash at any moment leaves a state that resumes to the same bytes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from gigasynth.atomic import atomic_write_bytes
from gigasynth.errors import GigasynthError

PROGRESS = "progress.json"
FORMAT_VERSION = 1


def work_path(out: Path) -> Path:
    """The work folder beside the output: SLIDE.ome.zarr -> SLIDE.ome.zarr.work."""
    return out.with_name(out.name + ".work")


def read_region(path: Path, rows: slice, cols: slice) -> np.ndarray:
    """(C, h, w) float32 from a state buffer."""
    return zarr.open_array(str(path), mode="r")[:, rows, cols]


def write_region(path: Path, rows: slice, cols: slice, values: np.ndarray) -> None:
    """Write (C, h, w) into a Zarr array; rows and cols cover whole chunks (one writer each)."""
    zarr.open_array(str(path), mode="r+")[:, rows, cols] = values


class WorkDir:
    """State buffers and the progress record of one job."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def x_buffer(self, step: int) -> Path:
        return self.root / f"x-{step:06d}.zarr"

    def cells_buffer(self, step: int, exchange: int) -> Path:
        return self.root / f"cells-{step:06d}-{exchange}.zarr"

    def create_buffer(self, path: Path, channels: int, height: int, width: int,
                      chunk: tuple[int, int]) -> None:
        """An empty float32 (channels, height, width) buffer, one chunk per tile."""
        zarr.create_array(str(path), shape=(channels, height, width),
                          chunks=(channels, *chunk), dtype="float32", compressors=None,
                          fill_value=0.0, overwrite=True)

    def load(self) -> dict[str, Any] | None:
        """The progress record, or None when the folder holds none."""
        path = self.root / PROGRESS
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise GigasynthError(f"unreadable progress record {path}: {exc}") from None
        if record.get("version") != FORMAT_VERSION:
            raise GigasynthError(f"{path} is from another gigasynth version; start over "
                                 "with --overwrite")
        return record

    def save(self, job: dict[str, Any], spec: dict[str, Any], step: int) -> None:
        """Record `step` (its buffer complete) as the point to resume from, atomically.

        `job` is what a resumed run must match; `spec` the full request, for readers.
        """
        record = {"version": FORMAT_VERSION, "step": step,
                  "buffer": self.x_buffer(step).name if step else None, "job": job,
                  "spec": spec}
        atomic_write_bytes(self.root / PROGRESS,
                           json.dumps(record, indent=2, sort_keys=True).encode())

    def prune(self, keep: Iterable[Path]) -> None:
        """Remove every buffer except `keep` (stale steps, debris of a killed run)."""
        keep_names = {p.name for p in keep}
        for path in self.root.glob("*.zarr"):
            if path.name not in keep_names and path.name.startswith(("x-", "cells-")):
                shutil.rmtree(path, ignore_errors=True)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
