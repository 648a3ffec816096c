"""Checkpoints, their one owner: layout, identity, bundled models, description, cache.

Layout: a checkpoint is a folder holding `model.safetensors` and `config.json`, or the
pair `NAME.safetensors` + `NAME.json` side by side; `builtin:NAME` names one shipped
with the package (`builtin_names`), or a shipped cascade `NAME.cascade.json` whose
stages are shipped models (`builtin_cascade_names`). Weights are safetensors, the config JSON
{"model": ..., "meta": ...}, each written atomically; `read_document` is the only
reader of that JSON. Identity: the checkpoint hash (sha256 of the weights file)
identifies a model in provenance records and job identities. `describe_checkpoint`
says what a checkpoint is without keeping its weights; `cached_checkpoint` is the
process's one cache of loaded models, keyed by reference, hash and device (Dask
workers, dataset shards and the service's admission share it).
"""

from __future__ import annotations

import hashlib
import json
import threading
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
from gigasynth.models import DiffNCA, build_model, count_parameters

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
BUILTIN = "builtin:"
BUILTIN_DIR = "builtin"  # the package folder of bundled models: NAME.safetensors + NAME.json


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


@dataclass(frozen=True)
class CheckpointFiles:
    """Where a checkpoint reference's two files lie."""

    weights: Path
    config: Path


def _builtin_dir() -> Path:
    return Path(str(resources.files("gigasynth") / BUILTIN_DIR))


def builtin_names() -> list[str]:
    """The models shipped with the package, sorted (reference each as `builtin:NAME`)."""
    return sorted(p.stem for p in _builtin_dir().glob("*.safetensors"))


BUILTIN_CASCADE_SUFFIX = ".cascade.json"


def builtin_cascade_file(ref: str) -> Path | None:
    """The cascade definition shipped as `builtin:NAME` (NAME.cascade.json beside the
    bundled models, its stages bundled models too); None when `ref` names none."""
    if not ref.startswith(BUILTIN):
        return None
    path = _builtin_dir() / f"{ref.removeprefix(BUILTIN)}{BUILTIN_CASCADE_SUFFIX}"
    return path if path.is_file() else None


def builtin_cascade_names() -> list[str]:
    """The cascades shipped with the package, sorted (each `builtin:NAME`)."""
    return sorted(
        p.name.removesuffix(BUILTIN_CASCADE_SUFFIX)
        for p in _builtin_dir().glob(f"*{BUILTIN_CASCADE_SUFFIX}")
    )


def is_checkpoint_folder(path: Path) -> bool:
    """Whether `path` is a checkpoint folder (both files present)."""
    return path.is_dir() and (path / WEIGHTS).is_file() and (path / CONFIG).is_file()


def checkpoint_files(ref: str) -> CheckpointFiles:
    """The weights and config files of a checkpoint reference (they may not exist)."""
    if ref.startswith(BUILTIN):
        name = ref.removeprefix(BUILTIN)
        base = _builtin_dir()
        weights, config = base / f"{name}.safetensors", base / f"{name}.json"
        if not weights.exists():
            raise GigasynthError(
                f"unknown builtin model {name!r} (known: {', '.join(builtin_names())})"
            )
        return CheckpointFiles(weights, config)
    path = Path(ref)
    if path.is_dir():
        return CheckpointFiles(path / WEIGHTS, path / CONFIG)
    if path.suffix == ".safetensors":
        sibling = path.with_suffix(".json")
        return CheckpointFiles(path, sibling if sibling.exists() else path.parent / CONFIG)
    if not path.exists():
        raise GigasynthError(f"{ref} is not a preset or checkpoint (no such file or folder)")
    raise GigasynthError(f"not a checkpoint (folder or .safetensors file): {ref}")


def _existing_files(ref: str) -> CheckpointFiles:
    """checkpoint_files, refusing a missing file (and naming a training run's checkpoint)."""
    files = checkpoint_files(ref)
    if not files.weights.exists():
        if Path(ref, "checkpoint", CONFIG).is_file():
            raise GigasynthError(f"{ref} is a training run; use its checkpoint: {ref}/checkpoint")
        raise GigasynthError(f"checkpoint weights not found: {files.weights}")
    if not files.config.exists():
        raise GigasynthError(f"checkpoint config not found: {files.config}")
    return files


def read_document(ref: str) -> dict[str, Any]:
    """The parsed config file of a checkpoint: {"model": {...}, "meta": {...}}.

    The one reader of a checkpoint's JSON; the "model" part is left for the caller's
    config class (ModelConfig here, UNetConfig in gigasynth.baselines).
    """
    return _read_document(_existing_files(ref).config)


def _read_document(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GigasynthError(f"unreadable checkpoint config {path}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise GigasynthError(f'unreadable checkpoint config {path}: no "model" object')
    if not isinstance(doc.get("meta", {}), dict):
        raise GigasynthError(f'unreadable checkpoint config {path}: "meta" is not an object')
    return doc


def declared_kind(ref: str) -> str | None:
    """The model kind a checkpoint's config declares, even where its weights are missing;
    None where the config cannot be read (loading it then names the problem)."""
    try:
        kind = _read_document(checkpoint_files(ref).config)["model"].get("kind")
    except GigasynthError:
        return None
    return kind if isinstance(kind, str) else None


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks: a checkpoint's identity is its weights'."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_checkpoint(ref: str, device: str | torch.device = "cpu") -> Checkpoint:
    """Load and validate a checkpoint; every problem is one GigasynthError line."""
    files = _existing_files(ref)
    config_path, weights = files.config, files.weights
    doc = _read_document(config_path)
    try:
        config = ModelConfig.from_dict(doc["model"])
    except (KeyError, TypeError) as exc:
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


# --- description ----------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint is, without its weights in memory: config, hash, metadata, size."""

    ref: str
    config: ModelConfig
    sha256: str
    meta: dict[str, Any]
    parameters: int

    def describe(self) -> dict[str, Any]:
        """The public description (as `GET /v1/models` lists it, less the model's name)."""
        c = self.config
        return {
            "kind": c.kind,
            "parameters": self.parameters,
            "channels": c.channels,
            "hidden": c.hidden,
            "nca_steps": c.nca_steps,
            "timesteps": c.timesteps,
            "schedule": c.schedule,
            "tileable": c.is_tileable,
            "halo_px": c.halo if c.is_tileable else None,
            "sha256": self.sha256,
            "mpp": self.meta.get("mpp"),
        }


_lock = threading.Lock()
# Descriptions by (ref, weights file, its mtime and size): hashing is read once per version.
_described: dict[tuple[str, str, int, int], CheckpointInfo] = {}


def describe_checkpoint(ref: str) -> CheckpointInfo:
    """The description of `ref`, kept while its weights file stays the same (mtime, size)."""
    files = _existing_files(ref)
    weights = files.weights
    stat = weights.stat()
    key = (ref, str(weights), stat.st_mtime_ns, stat.st_size)
    with _lock:
        known = _described.get(key)
    if known is not None:
        return known
    doc = _read_document(files.config)
    try:
        config = ModelConfig.from_dict(doc["model"])
    except (KeyError, TypeError) as exc:
        raise GigasynthError(f"unreadable checkpoint config of {ref}: {exc}") from None
    info = CheckpointInfo(
        ref,
        config,
        file_sha256(weights),
        dict(doc.get("meta", {})),
        count_parameters(build_model(config)),
    )
    with _lock:
        _described[key] = info
    return info


# --- the one cache of loaded models -----------------------------------------------------


class HashMismatch(GigasynthError):
    """A checkpoint's weights no longer have the hash a job or dataset was made with."""

    def __init__(self, ref: str, found: str, expected: str) -> None:
        super().__init__(f"checkpoint {ref} has sha256 {found[:16]}, expected {expected[:16]}")
        self.ref, self.found, self.expected = ref, found, expected


# Keyed by reference, weights hash, device and memory layout: equal weights under two
# configs (two references) are two models, and a model is never moved between devices.
_loaded: dict[tuple[str, str, str, bool], Checkpoint] = {}
_load_lock = threading.Lock()


def cached_checkpoint(
    ref: str, sha256: str, device: str | torch.device = "cpu", *, channels_last: bool = False
) -> Checkpoint:
    """The checkpoint `ref` on `device`, loaded on the first call per key in this process.

    Its weights must have hash `sha256` (HashMismatch otherwise: a checkpoint that changed
    on disk mid-job would break invariant I5). `channels_last` keeps a copy in that memory
    layout (the dataset's). Callers share the model: never modify it.
    """
    key = (ref, sha256, str(torch.device(device)), channels_last)
    with _load_lock:
        ckpt = _loaded.get(key)
        if ckpt is None:
            ckpt = load_checkpoint(ref, device)
            if ckpt.sha256 != sha256:
                raise HashMismatch(ref, ckpt.sha256, sha256)
            if channels_last:
                ckpt.model = ckpt.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            _loaded[key] = ckpt
        return ckpt
