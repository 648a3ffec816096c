"""The CPU update: channels-last, oneDNN convolutions, processed in cache-sized bands.

The plain path materialises every intermediate for the whole image (for a 512^2
image at 396 hidden channels the hidden activations alone are 415 MB) and lets
PyTorch pick a 1x1-convolution backend. Here each band of output rows (see
`BAND_BYTES_PER_THREAD`) runs perception, fc1, the per-pixel norm, LeakyReLU, fc2 and the
masked residual while its activations are still in cache, and every product runs in
oneDNN on NHWC data. The products and reductions are the plain path's; only the
library kernels and their summation order differ (float32 rounding, ~1e-7 relative).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gigasynth.kernels.folded import FoldedUpdate

# Hidden activations per band and thread: the band stays in the last-level cache,
# and each thread gets enough work per call to amortise OpenMP's barriers (they cost
# most on a shared, oversubscribed machine). Pathology preset, one thread: 10k pixels.
BAND_BYTES_PER_THREAD = 16 << 20
LEAKY_SLOPE = 0.01


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Unpadded stride-1 convolution of a channels-last batch in oneDNN where available."""
    if torch.backends.mkldnn.is_available():
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, [0, 0], [1, 1], [1, 1], 1)
    return F.conv2d(x, weight, bias)


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def _sample_groups(folded: FoldedUpdate) -> list[tuple[int, int]]:
    """[first, last) sample ranges that share their conditioned biases.

    Samples at the same diffusion step (a sampling batch) share them and run as one
    batch; otherwise each sample runs alone with its own biases.
    """
    batch = folded.perception_bias.shape[0]
    shared = all(
        torch.equal(bias, bias[:1].expand_as(bias))
        for bias in (folded.perception_bias, folded.fc1_bias)
    )
    return [(0, batch)] if shared else [(b, b + 1) for b in range(batch)]


def update_cpu(
    folded: FoldedUpdate,
    state: torch.Tensor,
    mask: torch.Tensor | None,
    pads: tuple[int, int, int, int],
    band_pixels: int | None = None,
) -> torch.Tensor:
    """One NCA update of a float32 (B, C, H, W) state; returns it channels-last.

    pads: (top, bottom, left, right) pixels of padding (0 or 1), 1 on canvas-border
    sides; elsewhere the convolution is valid and the output one pixel smaller.
    band_pixels: output pixels per band (default from BAND_BYTES_PER_THREAD).
    """
    top, bottom, left, right = pads
    if any(pads):
        mode = "reflect" if folded.reflect else "constant"
        state = F.pad(state, (left, right, top, bottom), mode=mode)
    padded = _channels_last(state)
    batch, channels, height, width = padded.shape
    out_h, out_w = height - 2, width - 2
    out = torch.empty(
        (batch, channels, out_h, out_w), dtype=padded.dtype, memory_format=torch.channels_last
    )
    perception_weight = _channels_last(folded.perception_weight)
    fc1_weight = _channels_last(folded.fc1_weight[:, :, None, None])
    fc2_weight = _channels_last(folded.fc2_weight[:, :, None, None])
    hidden, frozen = folded.hidden, folded.frozen
    if band_pixels is None:
        band_pixels = BAND_BYTES_PER_THREAD * torch.get_num_threads() // (4 * hidden)
    padded_nhwc = padded.permute(0, 2, 3, 1)
    out_nhwc = out.permute(0, 2, 3, 1)
    mask_nhwc = None if mask is None else mask.permute(0, 2, 3, 1)
    for first, last in _sample_groups(folded):
        group = last - first
        rows = max(1, band_pixels // (group * out_w))
        perception_bias = folded.perception_bias[first]
        fc1_bias = folded.fc1_bias[first]
        for r0 in range(0, out_h, rows):
            r1 = min(out_h, r0 + rows)
            perceived = _conv(
                padded[first:last, :, r0 : r1 + 2], perception_weight, perception_bias
            )
            centre = padded_nhwc[first:last, r0 + 1 : r1 + 1, 1 : out_w + 1]
            # A fresh tensor keeps canonical channels-last strides: oneDNN copies a view
            # whose size-1 batch axis has an odd stride back to NCHW.
            joined = torch.cat([centre, perceived.permute(0, 2, 3, 1)], dim=-1)
            h = _conv(joined.permute(0, 3, 1, 2), fc1_weight, fc1_bias)
            h = F.layer_norm(
                h.permute(0, 2, 3, 1),
                (hidden,),
                folded.norm_weight,
                folded.norm_bias,
                folded.norm_eps,
            )
            F.leaky_relu_(h, LEAKY_SLOPE)
            dx = _conv(h.permute(0, 3, 1, 2), fc2_weight, folded.fc2_bias).permute(0, 2, 3, 1)
            target = out_nhwc[first:last, r0:r1]
            target[..., :frozen] = centre[..., :frozen]
            if mask_nhwc is None:
                torch.add(centre[..., frozen:], dx[..., frozen:], out=target[..., frozen:])
            else:
                # dx * mask is exact (mask is 0 or 1), so this is the plain path's sum.
                torch.addcmul(
                    centre[..., frozen:],
                    dx[..., frozen:],
                    mask_nhwc[first:last, r0:r1],
                    out=target[..., frozen:],
                )
    return out
