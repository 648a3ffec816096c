"""What a worker keeps between tasks: the model, loaded once per checkpoint and hash.

Tasks carry only the checkpoint reference and its hash (a few bytes), never weights.
A worker loads the checkpoint on its first task, checks the hash (a checkpoint that
changed on disk mid-job would break invariant I5) and reuses the model afterwards.
"""

from __future__ import annotations

import threading

import torch

from gigasynth.checkpoint import load_checkpoint
from gigasynth.errors import GigasynthError
from gigasynth.models import DiffNCA

_lock = threading.Lock()
# Keyed by reference and weights hash: equal weights under two configs are two models.
_models: dict[tuple[str, str], DiffNCA] = {}


def worker_device() -> torch.device:
    """The worker's compute device: its GPU where it has one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def worker_model(checkpoint: str, sha256: str) -> DiffNCA:
    """The model of `checkpoint`, loaded on the first call per (checkpoint, hash) here."""
    with _lock:
        model = _models.get((checkpoint, sha256))
        if model is None:
            loaded = load_checkpoint(checkpoint, worker_device())
            if loaded.sha256 != sha256:
                raise GigasynthError(
                    f"checkpoint {checkpoint} changed since the job started "
                    f"(sha256 {loaded.sha256[:16]}, expected {sha256[:16]})"
                )
            model = loaded.model.eval()
            _models[(checkpoint, sha256)] = model
        return model
