"""Which update path runs: the fused kernels in inference where they apply, else plain ops.

A kernel takes a `FoldedUpdate` (the update's weights for one conditioning), the state,
the fire mask and the state's `Borders`; it knows nothing of the model that folded it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from functools import cache
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from gigasynth.geometry import Borders
from gigasynth.kernels.cpu import update_cpu
from gigasynth.kernels.folded import FoldedUpdate, border_pads

Kernel = Callable[[FoldedUpdate, torch.Tensor, torch.Tensor | None, Borders], torch.Tensor]
"""A fused update: (folded weights, state, fire mask or None, borders) -> next state."""


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


def fast_kernel(state: torch.Tensor) -> Kernel | None:
    """The fused path for this state, or None where none applies (plain ops then run).

    CPU: float32 states outside autocast. CUDA: with Triton, float32 or bf16 states,
    bf16 products under bf16 autocast. GIGASYNTH_PLAIN_UPDATE=1 turns both off.
    """
    if os.environ.get("GIGASYNTH_PLAIN_UPDATE") == "1":
        return None
    if state.device.type == "cpu":
        if state.dtype != torch.float32 or torch.is_autocast_enabled("cpu"):
            return None
        return _cpu_kernel
    if state.device.type == "cuda" and triton_available():
        dot_bf16 = _gpu_dot_bf16(state)
        if dot_bf16 is None:
            return None
        return _triton_kernel(dot_bf16)
    return None


def _cpu_kernel(
    folded: FoldedUpdate, state: torch.Tensor, fire_mask: torch.Tensor | None, borders: Borders
) -> torch.Tensor:
    return update_cpu(folded, state, fire_mask, border_pads(borders))


def _triton_kernel(dot_bf16: bool) -> Kernel:
    from gigasynth.kernels.triton_update import update_triton

    def run(
        folded: FoldedUpdate, state: torch.Tensor, fire_mask: torch.Tensor | None, borders: Borders
    ) -> torch.Tensor:
        return update_triton(folded, state, fire_mask, border_pads(borders), dot_bf16)

    return run


def fast_update(
    folded: FoldedUpdate,
    state: torch.Tensor,
    fire_mask: torch.Tensor | None,
    borders: Borders,
) -> torch.Tensor | None:
    """The update through a fused path, or None where none applies (see `fast_kernel`)."""
    kernel = fast_kernel(state)
    return None if kernel is None else kernel(folded, state, fire_mask, borders)


@runtime_checkable
class _HasFastPath(Protocol):
    """A module with a fused inference path it can switch (an NCA update)."""

    fast_path: bool


def set_fast_path(model: nn.Module, enabled: bool) -> None:
    """Turn the fused inference path on or off for every NCA update in `model`."""
    for module in model.modules():
        if isinstance(module, _HasFastPath):
            module.fast_path = enabled
