"""Opaque job ids and where a job's files live under the data dir.

URLs carry only ids of a fixed shape (32 lowercase hex digits); anything else is refused
before a path is built, so no URL segment can name a file outside the data dir.

The data dir holds every token's slides and the job store: it is private to the service's
user (folders 0700, files 0600; `gigasynth serve` also sets its umask to 0o077, so the
job outputs it and its embedded Dask workers write get the same modes).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from gigasynth.cascade.synth import cascade_work
from gigasynth.synth.state import discard_work

_JOB_ID = re.compile(r"[0-9a-f]{32}")
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) if needed and make it 0700: the owner's alone."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty if it is missing and make it 0600, before anything is written to it."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE_MODE))
    os.chmod(path, PRIVATE_FILE_MODE)
    return path


def new_job_id() -> str:
    return secrets.token_hex(16)


def is_job_id(text: str) -> bool:
    return _JOB_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class JobPaths:
    """The files of one job: the OME-Zarr the tiles come from, the optional OME-TIFF and preview."""

    root: Path

    @classmethod
    def of(cls, data_dir: Path, job_id: str) -> JobPaths:
        if not is_job_id(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return cls(data_dir / "jobs" / job_id)

    @property
    def zarr(self) -> Path:
        return self.root / "slide.ome.zarr"

    @property
    def ome_tiff(self) -> Path:
        return self.root / "slide.ome.tiff"

    @property
    def preview(self) -> Path:
        return self.root / "preview.png"

    @property
    def layout(self) -> Path:
        """A cascade job's layout: the uploaded image's pixels as PNG, copied at submission."""
        return self.root / "layout.png"

    def remove(self) -> None:
        """Delete everything of this job (outputs and the engine's resumable work state,
        also where GIGASYNTH_WORK_DIR put it; for a cascade, its stages' too)."""
        work = cascade_work(self.zarr)  # a stage's engine record: stage-K.ome.zarr.work
        for stage in sorted({p.name.split(".")[0] for p in work.glob("stage-*.ome.zarr*")}):
            discard_work(work / f"{stage}.ome.zarr")
        discard_work(self.zarr)
        shutil.rmtree(self.root, ignore_errors=True)
