"""The work folder: compact state buffers and the durable progress record.

Two places, usually one folder:
- the record folder `<out>.work/` beside the output holds `progress.json` and, at the
  end, the slide being assembled (renamed to `out` when complete: same filesystem);
- the state folder holds the buffers: the record folder itself, or with a work dir
  (`--work-dir`, another disk) `<work dir>/<out name>-<hash of out>.work/`. The
  record names it, so a resumed run finds its state wherever it started.

Buffers are Zarr arrays named by what they hold: `x-000007.zarr` is x after 7
diffusion steps (float16, STATE_DTYPE: the engine rounds x to it at the end of every
step, whole image and tiles alike), `cells-000008-1.zarr` the full cell state after
exchange 1 of step 8 (float32: it is never rounded). Their content is a pure function
of the job (I3, I5), so a task that runs twice writes the same bytes. One state chunk
is one engine tile (`TilePlan.chunk`): one writer per chunk. (The finished slide's Zarr
chunks are another size, `gigasynth.io.omezarr.SLIDE_CHUNK`.) Chunks are uncompressed,
so a buffer's size is known before it is written (the preflight).

`progress.json` names the job and the last saved step. A buffer it names is never
written again, so a crash at any moment leaves a state that resumes to the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from gigasynth.atomic import atomic_path, atomic_write_bytes
from gigasynth.errors import FieldError, GigasynthError
from gigasynth.sampling.step import STATE_DTYPE

PROGRESS = "progress.json"
# 1: float32 x buffers; 2: float16 x buffers (STATE_DTYPE), the state folder recorded.
FORMAT_VERSION = 2
X_DTYPE = str(STATE_DTYPE).removeprefix("torch.")
CELLS_DTYPE = "float32"


def work_path(out: Path) -> Path:
    """The record folder beside the output: SLIDE.ome.zarr -> SLIDE.ome.zarr.work."""
    return out.with_name(out.name + ".work")


def state_path(out: Path, work_dir: Path | None) -> Path:
    """Where a new run of `out` keeps its buffers: beside it, or in `work_dir`.

    The name in `work_dir` carries a hash of the output's absolute path, so outputs of
    the same name in different folders never share a state folder.
    """
    if work_dir is None:
        return work_path(out)
    digest = hashlib.sha256(str(Path(out).absolute()).encode()).hexdigest()[:12]
    return Path(work_dir).absolute() / f"{out.name}-{digest}.work"


def read_region(path: Path, rows: slice, cols: slice) -> np.ndarray:
    """(C, h, w) float32 from a state buffer (float16 buffers widen exactly)."""
    block = np.asarray(zarr.open_array(str(path), mode="r")[:, rows, cols])
    return block.astype(np.float32, copy=False)


def write_region(path: Path, rows: slice, cols: slice, values: np.ndarray) -> None:
    """Write (C, h, w) into a Zarr array; rows and cols cover whole chunks (one writer each).

    Values for a float16 buffer are already rounded to float16 (round_state), so the
    cast loses nothing.
    """
    array = zarr.open_array(str(path), mode="r+")
    array[:, rows, cols] = values.astype(array.dtype, copy=False)


def allocated_bytes(root: Path) -> int:
    """Disk space the files under `root` occupy (allocated blocks, not apparent sizes)."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # pruned while we walked
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


class WorkDir:
    """State buffers and the progress record of one job.

    `root`: the record folder (progress.json, the slide being assembled); `state`: the
    buffers' folder (default: `root`).
    """

    def __init__(self, root: Path, state: Path | None = None) -> None:
        self.root = root
        self.state = root if state is None else state

    def x_buffer(self, step: int) -> Path:
        return self.state / f"x-{step:06d}.zarr"

    def cells_buffer(self, step: int, exchange: int) -> Path:
        return self.state / f"cells-{step:06d}-{exchange}.zarr"

    @property
    def condition(self) -> Path:
        """A conditioned stage's low-resolution input (.npy, read by every tile task)."""
        return self.state / "condition.npy"

    def write_condition(self, low: np.ndarray) -> None:
        """Store the condition (channels, h, w) float32, atomically."""
        with atomic_path(self.condition) as tmp, open(tmp, "wb") as f:
            np.save(f, low)

    def create_buffer(
        self, path: Path, channels: int, height: int, width: int, chunk: tuple[int, int]
    ) -> None:
        """An empty (channels, height, width) buffer, one uncompressed chunk per engine tile:
        float16 for x (3 channels), float32 for the full cell state."""
        dtype = X_DTYPE if path.name.startswith("x-") else CELLS_DTYPE
        zarr.create_array(
            str(path),
            shape=(channels, height, width),
            chunks=(channels, *chunk),
            dtype=dtype,
            compressors=None,
            fill_value=0.0,
            overwrite=True,
        )

    def load(self) -> dict[str, Any] | None:
        """The progress record, or None when the folder holds none.

        A record of another state format is refused: its buffers would be misread.
        """
        path = self.root / PROGRESS
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise GigasynthError(f"unreadable progress record {path}: {exc}") from None
        version = record.get("version")
        if version != FORMAT_VERSION:
            raise FieldError(
                f"the saved state in {self.root} has state format {version} (format 1: "
                f"float32, before gigasynth stored {X_DTYPE}); this version resumes only "
                f"format {FORMAT_VERSION}",
                "start over with [overwrite] and without [resume]",
            )
        return record

    def recorded(self, record: dict[str, Any]) -> WorkDir:
        """This work folder with the state folder a record names."""
        return WorkDir(self.root, Path(record["state_dir"]))

    def create(self) -> None:
        """Make both folders (empty)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)

    def save(self, job: dict[str, Any], spec: dict[str, Any], step: int) -> None:
        """Record `step` (its buffer complete) as the point to resume from, atomically.

        `job` is what a resumed run must match; `spec` the full request, for readers.
        """
        record = {
            "version": FORMAT_VERSION,
            "step": step,
            "buffer": self.x_buffer(step).name if step else None,
            "state_dir": str(self.state.absolute()),
            "job": job,
            "spec": spec,
        }
        atomic_write_bytes(
            self.root / PROGRESS, json.dumps(record, indent=2, sort_keys=True).encode()
        )

    def prune(self, keep: Iterable[Path]) -> None:
        """Remove every buffer except `keep` (stale steps, debris of a killed run)."""
        keep_names = {p.name for p in keep}
        if not self.state.is_dir():
            return
        for path in self.state.glob("*.zarr"):
            if path.name not in keep_names and path.name.startswith(("x-", "cells-")):
                shutil.rmtree(path, ignore_errors=True)

    def drop(self, buffer: Path) -> None:
        """Remove one buffer no later exchange reads."""
        shutil.rmtree(buffer, ignore_errors=True)

    def allocated_bytes(self) -> int:
        """Disk space of the state buffers and the record (and what else the folders hold)."""
        total = allocated_bytes(self.state)
        return total if self.state == self.root else total + allocated_bytes(self.root)

    def remove(self) -> None:
        shutil.rmtree(self.state, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)


def discard_work(out: Path) -> None:
    """Remove what a run of `out` left unfinished: its record folder and its state
    folder, wherever the record names it (a job deleted before it finished)."""
    work = WorkDir(work_path(Path(out)))
    try:
        record = work.load()
    except GigasynthError:
        record = None
    if record is not None and record.get("state_dir"):
        work = work.recorded(record)
    work.remove()
