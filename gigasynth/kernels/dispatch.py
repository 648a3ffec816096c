"""Which update path runs: the fused kernels in inference where they apply, else plain ops."""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from typing import TYPE_CHECKING

import torch

from gigasynth.kernels.cpu import update_cpu
from gigasynth.kernels.folded import border_pads, fold

if TYPE_CHECKING:
    from torch import nn

    from gigasynth.models.nca import Borders, NCAUpdate


@cache
def triton_available() -> bool:
    """Triton is importable (GPU wheels on Linux; its interpreter runs on CPU)."""
    return importlib.util.find_spec("triton") is not None


def _gpu_dot_bf16(state: torch.Tensor) -> bool | None:
    """bf16 products (bf16 state or bf16 autocast), fp32 products, or None (no kernel)."""
    if torch.is_autocast_enabled("cuda"):
        return True if torch.get_autocast_dtype("cuda") == torch.bfloat16 else None
    if state.dtype == torch.bfloat16:
        return True
    return False if state.dtype == torch.float32 else None


def fast_update(
    update: NCAUpdate,
    state: torch.Tensor,
    cond: torch.Tensor,
    fire_mask: torch.Tensor | None,
    borders: Borders,
) -> torch.Tensor | None:
    """The update through a fused path, or None where none applies (plain ops then run).

    CPU: float32 states outside autocast. CUDA: with Triton, float32 or bf16 states,
    bf16 products under bf16 autocast. GIGASYNTH_PLAIN_UPDATE=1 turns both off.
    """
    if os.environ.get("GIGASYNTH_PLAIN_UPDATE") == "1":
        return None
    pads = border_pads(borders)
    if state.device.type == "cpu":
        if state.dtype != torch.float32 or torch.is_autocast_enabled("cpu"):
            return None
        return update_cpu(fold(update, cond), state, fire_mask, pads)
    if state.device.type == "cuda" and triton_available():
        dot_bf16 = _gpu_dot_bf16(state)
        if dot_bf16 is None:
            return None
        from gigasynth.kernels.triton_update import update_triton

        return update_triton(fold(update, cond), state, fire_mask, pads, dot_bf16)
    return None


def set_fast_path(model: nn.Module, enabled: bool) -> None:
    """Turn the fused inference path on or off for every NCA update in `model`."""
    for module in model.modules():
        if hasattr(module, "fast_path"):
            module.fast_path = enabled
