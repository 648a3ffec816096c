"""Load any denoiser checkpoint: an NCA one (gigasynth.checkpoint) or a UNet baseline.

The layout and the config file are gigasynth.checkpoint's; this module only builds a
UNet from the "model" part of a checkpoint whose kind is "unet".
"""

from __future__ import annotations

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from gigasynth.baselines.unet import UNetConfig, UNetDenoiser
from gigasynth.checkpoint import checkpoint_files, declared_kind, load_checkpoint, read_document
from gigasynth.errors import GigasynthError


def load_denoiser(ref: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The model of a checkpoint folder (UNet baseline or NCA) or `builtin:NAME`, in eval mode."""
    if declared_kind(ref) != "unet":
        return load_checkpoint(ref, device).model
    config = UNetConfig.from_dict(read_document(ref)["model"])
    model = UNetDenoiser(config)
    try:
        model.load_state_dict(load_file(str(checkpoint_files(ref).weights)))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise GigasynthError(f"unreadable UNet checkpoint {ref}: {exc}".splitlines()[0]) from None
    return model.eval().to(device)
