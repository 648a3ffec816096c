"""The output folder of a dataset: its identity, its manifest, one writer at a time.

`dataset.json` is written first (settings, totals, the command; `complete: false`)
and rewritten with `complete: true` only after the last manifest. `manifest.jsonl`
lists, in index order, the patches of every shard that is whole on disk; it is
rewritten atomically after each shard, so after any kill it names only files that
exist completely. A resumed run rebuilds it from the shards on disk.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any

from gigasynth import __version__
from gigasynth.atomic import atomic_write_bytes
from gigasynth.dataset.shards import TEMP_GLOB, complete_shards, remove_temporaries
from gigasynth.dataset.spec import DatasetSpec
from gigasynth.errors import FieldError, GigasynthError

DATASET_JSON = "dataset.json"
MANIFEST = "manifest.jsonl"
LOCK = ".lock"
FORMAT_VERSION = 1
_ARTIFACT_GLOBS = (DATASET_JSON, MANIFEST, "shard-*", TEMP_GLOB)


def read_dataset_json(out: Path) -> dict[str, Any]:
    path = out / DATASET_JSON
    try:
        doc = json.loads(path.read_text())
        DatasetSpec.from_dict(doc["settings"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise GigasynthError(f"{path} is not a gigasynth dataset description ({exc})") from None
    return doc


def _difference(key: str, old: Any, new: Any) -> str:
    """One setting that differs; a cascade's by the parts that do (its layouts' list may
    be long)."""
    if isinstance(old, dict) and isinstance(new, dict):
        parts = sorted(p for p in set(old) | set(new) if old.get(p) != new.get(p))
        return f"{key} {', '.join(parts)} differ"
    if isinstance(old, dict) or isinstance(new, dict):
        return f"{key} differs"
    return f"{key} {old} -> {new}"


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = [k for k in {**old, **new} if old.get(k) != new.get(k)]
    return ", ".join(_difference(k, old.get(k), new.get(k)) for k in keys[:4])


def _artifacts(out: Path) -> list[Path]:
    return sorted({p for pattern in _ARTIFACT_GLOBS for p in out.glob(pattern)})


class DatasetFolder:
    """Exclusive access to one dataset's folder for the run that writes it."""

    def __init__(
        self, out: Path, spec: DatasetSpec, checkpoint: dict[str, Any], command: str | None
    ) -> None:
        self.out = out
        self.spec = spec
        self.checkpoint = checkpoint
        self.command = command
        self.done: set[int] = set()
        self._lock_fd: int | None = None

    def open(self, overwrite: bool = False) -> set[int]:
        """Lock, check what the folder holds, clean up; returns the shards already whole."""
        if self.out.exists() and not self.out.is_dir():
            raise FieldError(f"[out] {self.out} is a file, not a folder")
        self._refuse_a_foreign_folder()  # before the lock file is made in it
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._adopt(overwrite)
            remove_temporaries(self.out)
            self.done = complete_shards(self.spec, self.out)
            self.write_manifest()
        except BaseException:
            self.close()
            raise
        return set(self.done)

    def _lock(self) -> None:
        fd = os.open(self.out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise GigasynthError(f"another gigasynth run is writing {self.out}") from None
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _adopt(self, overwrite: bool) -> None:
        """Continue the same dataset, replace another one (--overwrite), or refuse."""
        new = self.spec.to_dict()
        if (self.out / DATASET_JSON).exists():
            try:
                old = read_dataset_json(self.out)["settings"]
            except GigasynthError:
                if not overwrite:
                    raise
            else:
                if old == new:
                    return
                if not overwrite:
                    raise FieldError(
                        f"{self.out} holds another dataset ({_differences(old, new)})",
                        "pass [overwrite] to replace it or choose another [out]",
                    )
        self._refuse_a_foreign_folder()
        artifacts = _artifacts(self.out)
        if artifacts and not overwrite:
            raise FieldError(
                f"{self.out} holds a dataset without {DATASET_JSON}",
                "pass [overwrite] to replace it or choose another [out]",
            )
        for path in artifacts:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        self.write_description(complete=False)

    def _refuse_a_foreign_folder(self) -> None:
        """A folder with files but no dataset is never written to (nothing of it is lost)."""
        if not self.out.is_dir():
            return
        artifacts = _artifacts(self.out)
        if not artifacts and any(p.name != LOCK for p in self.out.iterdir()):
            raise GigasynthError(
                f"{self.out} is not empty and holds no gigasynth dataset; "
                "choose an empty or new folder"
            )

    def description(self, complete: bool) -> dict[str, Any]:
        spec = self.spec
        return {
            "gigasynth_dataset": FORMAT_VERSION,
            "synthetic": True,
            "complete": complete,
            "settings": spec.to_dict(),
            "totals": {
                "patches": spec.count,
                "shards": spec.shards,
                "patches_per_shard": spec.shard_size,
            },
            "checkpoint": self.checkpoint,
            "command": self.command,
            "gigasynth_version": __version__,
        }

    def write_description(self, complete: bool) -> None:
        doc = json.dumps(self.description(complete), indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(self.out / DATASET_JSON, doc.encode())

    def write_manifest(self) -> None:
        spec = self.spec
        lines = [
            json.dumps(spec.manifest_line(i), sort_keys=True) + "\n"
            for shard in sorted(self.done)
            for i in spec.shard_indices(shard)
        ]
        atomic_write_bytes(self.out / MANIFEST, "".join(lines).encode())

    def commit(self, shard: int) -> None:
        """Record a shard that is now whole on disk."""
        self.done.add(shard)
        self.write_manifest()

    def finish(self) -> None:
        """Check every shard is whole, then mark the dataset complete."""
        self.done = complete_shards(self.spec, self.out)
        missing = sorted(set(range(self.spec.shards)) - self.done)
        if missing:
            raise GigasynthError(f"shards {missing[:5]} of {self.out} are missing")
        self.write_manifest()
        self.write_description(complete=True)
