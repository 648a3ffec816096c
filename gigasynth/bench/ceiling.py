"""The machine's limits: dense matrix-product FLOP/s and device copy bandwidth."""

from __future__ import annotations

import torch

from gigasynth.bench.timing import time_interleaved


def matmul_rates(device: torch.device, dtype: torch.dtype, n: int, reps: int) -> dict[str, float]:
    """FLOP/s of an n x n x n product: torch.matmul, and on CPU oneDNN's as well.

    On CPU torch.matmul goes to MKL while the update's convolutions run in oneDNN,
    which can be faster on some processors; the ceiling is the better of the two.
    """
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    calls = {"matmul": lambda: torch.matmul(a, b)}
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        # The same product as a 1x1 convolution over an n-pixel, n-channel image laid
        # out channels-last, as the update's convolutions see their inputs.
        image = a.view(1, 1, n, n).permute(0, 3, 1, 2)
        weight = b.T.contiguous().view(n, n, 1, 1)
        calls["onednn"] = lambda: torch.ops.aten.mkldnn_convolution(
            image, weight, None, [0, 0], [1, 1], [1, 1], 1
        )
    timings = time_interleaved(calls, device, reps)
    return {name: 2.0 * n**3 / t.best_s for name, t in timings.items()}


def copy_bandwidth(device: torch.device, nbytes: int, reps: int) -> float:
    """Bytes per second moved (read plus write) by a device-to-device copy."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    timing = time_interleaved({"copy": lambda: dst.copy_(src)}, device, reps)["copy"]
    return 2.0 * src.numel() * 4 / timing.best_s
