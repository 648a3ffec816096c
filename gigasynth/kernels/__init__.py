"""Fast NCA updates for inference: a fused Triton kernel (GPU) and a banded oneDNN path (CPU).

The kernels take a folded update (`FoldedUpdate`: one step's weights, conditioning folded
in) and import nothing from gigasynth.models. `NCAUpdate` asks `fast_kernel` for a path
under no_grad and passes it `NCAUpdate.folded(cond)`; training and
`set_fast_path(model, False)` keep the plain PyTorch ops. Triton is imported only when a
CUDA state needs it.
"""

from gigasynth.kernels.dispatch import (
    Kernel,
    fast_kernel,
    fast_update,
    set_fast_path,
    triton_available,
)
from gigasynth.kernels.folded import FoldedUpdate, border_pads

__all__ = [
    "FoldedUpdate",
    "Kernel",
    "border_pads",
    "fast_kernel",
    "fast_update",
    "set_fast_path",
    "triton_available",
]
