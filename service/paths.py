"""Opaque job ids and where a job's files live under the data dir.

URLs carry only ids of a fixed shape (32 lowercase hex digits); anything else is refused
before a path is built, so no URL segment can name a file outside the data dir.
"""

from __future__ import annotations

import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

_JOB_ID = re.compile(r"[0-9a-f]{32}")


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

    def remove(self) -> None:
        """Delete everything of this job (outputs and the engine's resumable work state)."""
        shutil.rmtree(self.root, ignore_errors=True)
