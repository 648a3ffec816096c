"""Checkpoints: weights as safetensors plus the model config as JSON, written atomically.

A checkpoint is a folder holding `model.safetensors` and `config.json`, or the pair
`NAME.safetensors` + `NAME.json` side by side; `builtin:NAME` names one shipped with
the package. The checkpoint hash (sha256 of the weights file) identifies a model in
provenance records.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gigasynth.atomic import atomic_path, atomic_write_bytes
from gigasynth.config import ModelConfig
from gigasynth.errors import GigasynthError
from gigasynth.models import DiffNCA, build_model

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


@dataclass
class Checkpoint:
    """A loaded model with its config, where it came from and its hash."""

    model: DiffNCA
    config: ModelConfig
    sha256: str
    source: str
    meta: dict[str, Any]

    @property
    def short_hash(self) -> str:
        return self.sha256[:16]


def save_checkpoint(
    folder: Path, model: torch.nn.Module, config: ModelConfig, meta: dict[str, Any] | None = None
) -> Path:
    """Save weights and config into `folder`, each file atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(tensors, str(tmp))
    doc = {"model": config.to_dict(), "meta": meta or {}}
    atomic_write_bytes(folder / CONFIG, json.dumps(doc, indent=2, sort_keys=True).encode())
    return folder


def _resolve(ref: str) -> tuple[Path, Path]:
    """(weights file, config file) for a checkpoint reference."""
    if ref.startswith("builtin:"):
        name = ref.removeprefix("builtin:")
        base = resources.files("gigasynth") / "builtin"
        weights, config = Path(str(base / f"{name}.safetensors")), Path(str(base / f"{name}.json"))
        if not weights.exists():
            known = sorted(p.stem for p in Path(str(base)).glob("*.safetensors"))
            raise GigasynthError(f"unknown builtin model {name!r} (known: {', '.join(known)})")
        return weights, config
    path = Path(ref)
    if path.is_dir():
        return path / WEIGHTS, path / CONFIG
    if path.suffix == ".safetensors":
        sibling = path.with_suffix(".json")
        return path, sibling if sibling.exists() else path.parent / CONFIG
    if not path.exists():
        raise GigasynthError(f"{ref} is not a preset or checkpoint (no such file or folder)")
    raise GigasynthError(f"not a checkpoint (folder or .safetensors file): {ref}")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_checkpoint(ref: str, device: str | torch.device = "cpu") -> Checkpoint:
    """Load and validate a checkpoint; every problem is one GigasynthError line."""
    weights, config_path = _resolve(ref)
    if not weights.exists():
        raise GigasynthError(f"checkpoint weights not found: {weights}")
    if not config_path.exists():
        raise GigasynthError(f"checkpoint config not found: {config_path}")
    try:
        doc = json.loads(config_path.read_text())
        config = ModelConfig.from_dict(doc["model"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise GigasynthError(f"unreadable checkpoint config {config_path}: {exc}") from None
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise GigasynthError(f"unreadable checkpoint weights {weights}: {exc}") from None
    model = build_model(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        detail = f"missing {missing[:3]}" if missing else f"shape of {wrong[:3]}"
        raise GigasynthError(
            f"checkpoint {ref} does not match its config ({config.kind}, "
            f"{config.channels} channels): {detail or 'unexpected tensors'}"
        )
    for name, value in tensors.items():
        if not torch.isfinite(value).all():
            raise GigasynthError(f"checkpoint {ref} has non-finite weights in {name}")
    model.load_state_dict(tensors)
    model.eval().to(device)
    return Checkpoint(model, config, file_sha256(weights), ref, doc.get("meta", {}))
