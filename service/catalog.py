"""The models a deployment offers, by name: bundled ones, checkpoint folders and cascades.

Clients name a model (`builtin:tiny-pathology`, or the folder name of a checkpoint under
the models dir) or a cascade (`builtin:skin`, or the folder name of a cascade under the
models dir: a folder holding cascade.json, its stages' checkpoints referenced from it);
they never send a path. A name is looked up in this catalog or refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gigasynth.cascade import Cascade, cascade_file, is_cascade, load_cascade
from gigasynth.checkpoint import (
    BUILTIN,
    Checkpoint,
    CheckpointInfo,
    builtin_cascade_names,
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


@dataclass(frozen=True)
class CascadeEntry:
    """One offered cascade: its public name and the checked definition."""

    name: str
    cascade: Cascade

    @property
    def sha256(self) -> str:
        """The finest stage's weights: the checkpoint that makes the slide's pixels."""
        return self.cascade.stages[-1].sha256

    def describe(self) -> dict[str, Any]:
        """What GET /v1/models shows of it: stages and resolutions, no server path."""
        c = self.cascade
        return {
            "name": self.name,
            "kind": "cascade",
            "layout": c.layout,
            "layout_mpp": c.layout_mpp,
            "factor": c.factor,
            "mpp": c.mpp,
            "stages": [
                {
                    "sha256": s.sha256,
                    "mpp": s.mpp,
                    "sampler": s.sampler,
                    "steps": s.steps,
                    "condition_downsample": s.condition_downsample,
                }
                for s in c.stages
            ],
        }


def named(message: str, definition: Path, name: str) -> str:
    """An engine message about a cascade with its definition file's path (as given, or
    absolute) replaced by the cascade's public name."""
    for path in (definition.absolute(), definition):
        message = message.replace(str(path), repr(name))
    return message


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

    def _cascades(self) -> dict[str, str]:
        """name -> cascade reference: bundled cascades (`builtin:NAME`, filtered like the
        bundled models) and cascade folders of the models dir."""
        found = {
            BUILTIN + name: BUILTIN + name
            for name in builtin_cascade_names()
            if self.builtin_names is None or name in self.builtin_names
        }
        if self.models_dir.is_dir():
            for folder in sorted(self.models_dir.iterdir()):
                if _FOLDER_NAME.fullmatch(folder.name) and is_cascade(folder):
                    found[folder.name] = str(folder)
        return found

    def _entry(self, name: str, ref: str) -> ModelEntry:
        try:
            info = describe_checkpoint(ref)
        except (OSError, GigasynthError) as exc:
            raise GigasynthError(f"model {name!r} has an unreadable config: {exc}") from None
        return ModelEntry(name, ref, info.config, info.parameters, info.sha256, info.meta)

    def _cascade_entry(self, name: str, ref: str) -> CascadeEntry:
        try:
            return CascadeEntry(name, load_cascade(ref))
        except (OSError, GigasynthError) as exc:
            definition = cascade_file(ref) or Path(ref)
            raise GigasynthError(
                f"cascade {name!r} is unusable: {named(str(exc), definition, name)}"
            ) from None

    def entries(self) -> list[ModelEntry | CascadeEntry]:
        """Every usable model and cascade; a broken one is left out, not fatal."""
        out: list[ModelEntry | CascadeEntry] = []
        for name, ref in self._candidates().items():
            try:
                out.append(self._entry(name, ref))
            except (GigasynthError, OSError):
                continue
        for name, ref in self._cascades().items():
            try:
                out.append(self._cascade_entry(name, ref))
            except (GigasynthError, OSError):
                continue
        return out

    def lookup(self, name: str) -> ModelEntry | CascadeEntry:
        """The model or cascade called `name`, or a GigasynthError listing the known names."""
        cascades = self._cascades()
        if name in cascades:
            return self._cascade_entry(name, cascades[name])
        return self.get(name)

    def get(self, name: str) -> ModelEntry:
        """The model called `name`, or a GigasynthError listing the known names."""
        candidates = self._candidates()
        if name not in candidates:
            known = ", ".join([*candidates, *self._cascades()]) or "none installed"
            raise GigasynthError(f"unknown model {name[:100]!r} (available: {known})")
        return self._entry(name, candidates[name])

    def checkpoint(self, entry: ModelEntry) -> Checkpoint:
        """The loaded checkpoint of an entry (kept while its weights keep its hash)."""
        return cached_checkpoint(entry.ref, entry.sha256)
