"""Load any denoiser checkpoint: an NCA one (gigasynth.checkpoint) or a UNet baseline."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from gigasynth.baselines.unet import UNetConfig, UNetDenoiser
from gigasynth.checkpoint import CONFIG, WEIGHTS, load_checkpoint
from gigasynth.errors import GigasynthError


def _checkpoint_kind(ref: str) -> str | None:
    config = Path(ref) / CONFIG
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("model", {}).get("kind")
    except (json.JSONDecodeError, AttributeError):
        return None


def load_denoiser(ref: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The model of a checkpoint folder (UNet baseline or NCA) or `builtin:NAME`, in eval mode."""
    if _checkpoint_kind(ref) != "unet":
        return load_checkpoint(ref, device).model
    folder = Path(ref)
    config = UNetConfig.from_dict(json.loads((folder / CONFIG).read_text())["model"])
    model = UNetDenoiser(config)
    try:
        model.load_state_dict(load_file(str(folder / WEIGHTS)))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise GigasynthError(f"unreadable UNet checkpoint {ref}: {exc}".splitlines()[0]) from None
    return model.eval().to(device)
