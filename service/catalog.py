"""The models a deployment offers, by name: bundled ones and checkpoint folders.

Clients name a model (`builtin:tiny-pathology`, or the folder name of a checkpoint under
the models dir); they never send a path. A name is looked up in this catalog or refused.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from gigasynth.checkpoint import CONFIG, WEIGHTS, Checkpoint, file_sha256, load_checkpoint
from gigasynth.config import ModelConfig
from gigasynth.errors import GigasynthError
from gigasynth.models import build_model, count_parameters

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
        c = self.config
        return {
            "name": self.name,
            "kind": c.kind,
            "parameters": self.parameters,
            "channels": c.channels,
            "hidden": c.hidden,
            "nca_steps": c.steps,
            "timesteps": c.timesteps,
            "schedule": c.schedule,
            "tileable": c.is_tileable,
            "halo_px": c.halo if c.is_tileable else None,
            "sha256": self.sha256,
            "mpp": self.meta.get("mpp"),
        }


class ModelCatalog:
    """Bundled checkpoints (optionally filtered) plus the folders of a models dir."""

    def __init__(self, models_dir: Path, builtin_names: tuple[str, ...] | None) -> None:
        self.models_dir = models_dir
        self.builtin_names = builtin_names
        self._cache: dict[tuple[str, float, int], ModelEntry] = {}
        self._loaded: dict[tuple[str, str], Checkpoint] = {}
        self._lock = threading.Lock()

    def _candidates(self) -> dict[str, tuple[str, Path, Path]]:
        """name -> (checkpoint ref, weights file, config file)."""
        found: dict[str, tuple[str, Path, Path]] = {}
        base = Path(str(resources.files("gigasynth") / "builtin"))
        for weights in sorted(base.glob("*.safetensors")):
            if self.builtin_names is None or weights.stem in self.builtin_names:
                ref = f"builtin:{weights.stem}"
                found[ref] = (ref, weights, weights.with_suffix(".json"))
        if self.models_dir.is_dir():
            for folder in sorted(self.models_dir.iterdir()):
                if (_FOLDER_NAME.fullmatch(folder.name) and folder.is_dir()
                        and (folder / WEIGHTS).is_file() and (folder / CONFIG).is_file()):
                    found[folder.name] = (str(folder), folder / WEIGHTS, folder / CONFIG)
        return found

    def _entry(self, name: str, ref: str, weights: Path, config_path: Path) -> ModelEntry:
        stat = weights.stat()
        key = (str(weights), stat.st_mtime, stat.st_size)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached.name == name:
            return cached
        try:
            doc = json.loads(config_path.read_text())
            config = ModelConfig.from_dict(doc["model"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError, GigasynthError) as exc:
            raise GigasynthError(f"model {name!r} has an unreadable config: {exc}") from None
        entry = ModelEntry(name, ref, config, count_parameters(build_model(config)),
                           file_sha256(weights), dict(doc.get("meta", {})))
        with self._lock:
            self._cache[key] = entry
        return entry

    def entries(self) -> list[ModelEntry]:
        """Every usable model; a broken checkpoint folder is left out, not fatal."""
        out = []
        for name, (ref, weights, config_path) in self._candidates().items():
            try:
                out.append(self._entry(name, ref, weights, config_path))
            except (GigasynthError, OSError):
                continue
        return out

    def get(self, name: str) -> ModelEntry:
        """The model called `name`, or a GigasynthError listing the known names."""
        candidates = self._candidates()
        if name not in candidates:
            known = ", ".join(candidates) or "none installed"
            raise GigasynthError(f"unknown model {name[:100]!r} (available: {known})")
        ref, weights, config_path = candidates[name]
        return self._entry(name, ref, weights, config_path)

    def checkpoint(self, entry: ModelEntry) -> Checkpoint:
        """The loaded checkpoint of an entry (kept while its weights stay the same)."""
        key = (entry.ref, entry.sha256)
        with self._lock:
            loaded = self._loaded.get(key)
        if loaded is None:
            loaded = load_checkpoint(entry.ref)
            with self._lock:
                self._loaded[key] = loaded
        return loaded
