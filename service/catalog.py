"""The models a deployment offers, by name: bundled ones and checkpoint folders.

Clients name a model (`builtin:tiny-pathology`, or the folder name of a checkpoint under
the models dir); they never send a path. A name is looked up in this catalog or refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gigasynth.checkpoint import (
    BUILTIN,
    Checkpoint,
    CheckpointInfo,
    builtin_names,
    cached_checkpoint,
    describe_checkpoint,
    is_checkpoint_folder,
)
from gigasynth.config import ModelConfig
from gigasynth.errors import GigasynthError

_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class ModelEntry:
    """One offered model: its public name, the checkpoint reference and its description."""

    name: str
    ref: str
    config: ModelConfig
    parameters: int
    sha256: str
    meta: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        info = CheckpointInfo(self.ref, self.config, self.sha256, self.meta, self.parameters)
        return {"name": self.name, **info.describe()}


class ModelCatalog:
    """Bundled checkpoints (optionally filtered) plus the folders of a models dir.

    Which checkpoints exist, what they are and the loaded models are
    gigasynth.checkpoint's (its description and model cache); the catalog adds only the
    deployment's policy: which bundled models are offered, and public names.
    """

    def __init__(self, models_dir: Path, builtin_names: tuple[str, ...] | None) -> None:
        self.models_dir = models_dir
        self.builtin_names = builtin_names

    def _candidates(self) -> dict[str, str]:
        """name -> checkpoint ref."""
        found: dict[str, str] = {}
        for name in builtin_names():
            if self.builtin_names is None or name in self.builtin_names:
                found[BUILTIN + name] = BUILTIN + name
        if self.models_dir.is_dir():
            for folder in sorted(self.models_dir.iterdir()):
                if _FOLDER_NAME.fullmatch(folder.name) and is_checkpoint_folder(folder):
                    found[folder.name] = str(folder)
        return found

    def _entry(self, name: str, ref: str) -> ModelEntry:
        try:
            info = describe_checkpoint(ref)
        except (OSError, GigasynthError) as exc:
            raise GigasynthError(f"model {name!r} has an unreadable config: {exc}") from None
        return ModelEntry(name, ref, info.config, info.parameters, info.sha256, info.meta)

    def entries(self) -> list[ModelEntry]:
        """Every usable model; a broken checkpoint folder is left out, not fatal."""
        out = []
        for name, ref in self._candidates().items():
            try:
                out.append(self._entry(name, ref))
            except (GigasynthError, OSError):
                continue
        return out

    def get(self, name: str) -> ModelEntry:
        """The model called `name`, or a GigasynthError listing the known names."""
        candidates = self._candidates()
        if name not in candidates:
            known = ", ".join(candidates) or "none installed"
            raise GigasynthError(f"unknown model {name[:100]!r} (available: {known})")
        return self._entry(name, candidates[name])

    def checkpoint(self, entry: ModelEntry) -> Checkpoint:
        """The loaded checkpoint of an entry (kept while its weights keep its hash)."""
        return cached_checkpoint(entry.ref, entry.sha256)
