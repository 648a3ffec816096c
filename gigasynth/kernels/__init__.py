"""Fast NCA updates for inference: a fused Triton kernel (GPU) and a banded oneDNN path (CPU).

`NCAUpdate` calls `fast_update` under no_grad; training and `set_fast_path(model, False)`
keep the plain PyTorch ops. Triton is imported only when a CUDA state needs it.
"""

from gigasynth.kernels.dispatch import fast_update, set_fast_path, triton_available

__all__ = ["fast_update", "set_fast_path", "triton_available"]
