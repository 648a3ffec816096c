"""The GPU update: one Triton kernel for perception, rule MLP, norm, fire mask and residual.

Each program takes a BLOCK_Y x BLOCK_X block of output pixels, channels-last. The 3x3
perception is nine (pixels, C) x (C, C) products accumulated in fp32; fc1 runs in
hidden chunks of HB channels. The per-pixel norm needs the statistics of all hidden
channels before LeakyReLU, so the chunks are computed twice: pass one gathers the
variance around the mean (the mean itself is linear in the inputs and comes from one
weighted row sum), pass two normalises, applies LeakyReLU and accumulates fc2. No
hidden activation leaves the chip; the cost is a second fc1 (about +37 % MACs for the
pathology preset).

Products take bf16 operands with fp32 accumulation (the state may stay fp32 under
autocast), or fp32 operands with IEEE precision for an fp32 run. Channel counts are
padded to powers of two with zero weights. The fire mask comes in precomputed by
`gigasynth.models.nca.fire_mask` (keyed), so it is the plain path's mask bit for bit.

Triton's CPU interpreter (TRITON_INTERPRET=1) multiplies bf16 operands as raw
integers, so under the interpreter operands are rounded to bf16 (ROUND) and
multiplied in fp32 (OP): the same products, since bf16 x bf16 is exact in fp32.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from gigasynth.kernels.folded import FoldedUpdate

LEAKY_SLOPE = 0.01


@triton.jit
def _fc1_chunk(
    xc,
    pc,
    w1a_ptr,
    w1b_ptr,
    b1_row,
    j,
    c_in,
    hid,
    H_P: tl.constexpr,
    OP: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Hidden channels j..j+HB of fc1 for a block of pixels, fp32."""
    cols = j + hid
    w_off = c_in[:, None] * H_P + cols[None, :]
    wa = tl.load(w1a_ptr + w_off).to(OP)
    wb = tl.load(w1b_ptr + w_off).to(OP)
    h = tl.dot(xc, wa, input_precision=PRECISION)
    h = tl.dot(pc, wb, h, input_precision=PRECISION)
    return h + tl.load(b1_row + cols)[None, :]


@triton.jit
def _nca_update_kernel(
    x_ptr,
    out_ptr,
    mask_ptr,
    wp_ptr,
    bp_ptr,
    w1a_ptr,
    w1b_ptr,
    b1_ptr,
    mean_a_ptr,
    mean_b_ptr,
    mean_bias_ptr,
    g_ptr,
    beta_ptr,
    w2_ptr,
    b2_ptr,
    h_in,
    w_in,
    h_out,
    w_out,
    pad_top,
    pad_left,
    sxb,
    sxy,
    sxx,
    sob,
    soy,
    sox,
    smb,
    smy,
    smx,
    channels,
    frozen,
    hidden,
    eps,
    C_P: tl.constexpr,
    H_P: tl.constexpr,
    HB: tl.constexpr,
    BLOCK_Y: tl.constexpr,
    BLOCK_X: tl.constexpr,
    REFLECT: tl.constexpr,
    HAS_MASK: tl.constexpr,
    ROUND: tl.constexpr,
    OP: tl.constexpr,
    PRECISION: tl.constexpr,
):
    # A BLOCK_Y x BLOCK_X block of output pixels, flattened row-major.
    b = tl.program_id(2)
    pix = tl.arange(0, BLOCK_Y * BLOCK_X)
    oy = tl.program_id(1) * BLOCK_Y + pix // BLOCK_X
    ox = tl.program_id(0) * BLOCK_X + pix % BLOCK_X
    ch = tl.arange(0, C_P)
    pix_ok = (oy < h_out) & (ox < w_out)
    ch_ok = ch < channels
    x_base = x_ptr + b.to(tl.int64) * sxb

    # Perception: nine taps; reflect (or zero) padding on the padded sides only.
    perceived = tl.zeros([BLOCK_Y * BLOCK_X, C_P], tl.float32)
    for tap in tl.static_range(9):
        iy = oy + tap // 3 - pad_top
        ix = ox + tap % 3 - pad_left
        if REFLECT:
            iy = tl.where(iy < 0, -iy, iy)
            iy = tl.where(iy >= h_in, 2 * h_in - 2 - iy, iy)
            ix = tl.where(ix < 0, -ix, ix)
            ix = tl.where(ix >= w_in, 2 * w_in - 2 - ix, ix)
            ok = pix_ok
        else:
            ok = pix_ok & (ix >= 0) & (ix < w_in) & (iy >= 0) & (iy < h_in)
        ptrs = x_base + (iy.to(tl.int64) * sxy + ix.to(tl.int64) * sxx)[:, None] + ch[None, :]
        xt = tl.load(ptrs, mask=ok[:, None] & ch_ok[None, :], other=0.0).to(ROUND).to(OP)
        wt = tl.load(wp_ptr + tap * C_P * C_P + ch[:, None] * C_P + ch[None, :]).to(OP)
        perceived = tl.dot(xt, wt, perceived, input_precision=PRECISION)
    perceived += tl.load(bp_ptr + b * C_P + ch)[None, :]

    # The centre cell, kept in the state's precision for the residual.
    centre_off = (oy + 1 - pad_top).to(tl.int64) * sxy + (ox + 1 - pad_left).to(tl.int64) * sxx
    io_ok = pix_ok[:, None] & ch_ok[None, :]
    centre = tl.load(x_base + centre_off[:, None] + ch[None, :], mask=io_ok, other=0.0)
    centre = centre.to(tl.float32)
    xc = centre.to(ROUND).to(OP)
    pc = perceived.to(ROUND).to(OP)

    # Mean of the hidden pre-activations: linear, one weighted row sum of the operands.
    mean = tl.sum(xc.to(tl.float32) * tl.load(mean_a_ptr + ch)[None, :], axis=1)
    mean += tl.sum(pc.to(tl.float32) * tl.load(mean_b_ptr + ch)[None, :], axis=1)
    mean += tl.load(mean_bias_ptr + b)
    hid = tl.arange(0, HB)
    b1_row = b1_ptr + b * H_P
    # Pass one: variance around that mean.
    sq = tl.zeros([BLOCK_Y * BLOCK_X], tl.float32)
    for j in range(0, H_P, HB):
        h = _fc1_chunk(xc, pc, w1a_ptr, w1b_ptr, b1_row, j, ch, hid, H_P, OP, PRECISION)
        d = tl.where((j + hid < hidden)[None, :], h - mean[:, None], 0.0)
        sq += tl.sum(d * d, axis=1)
    rstd = 1.0 / tl.sqrt(sq / hidden + eps)
    # Pass two: normalise, LeakyReLU, fc2.
    dx = tl.zeros([BLOCK_Y * BLOCK_X, C_P], tl.float32)
    for j in range(0, H_P, HB):
        h = _fc1_chunk(xc, pc, w1a_ptr, w1b_ptr, b1_row, j, ch, hid, H_P, OP, PRECISION)
        n = (h - mean[:, None]) * rstd[:, None] * tl.load(g_ptr + j + hid)[None, :]
        n += tl.load(beta_ptr + j + hid)[None, :]
        n = tl.where(n > 0, n, n * LEAKY_SLOPE).to(ROUND).to(OP)
        w2 = tl.load(w2_ptr + (j + hid)[:, None] * C_P + ch[None, :]).to(OP)
        dx = tl.dot(n, w2, dx, input_precision=PRECISION)
    dx += tl.load(b2_ptr + ch)[None, :]

    # Keyed fire mask and residual; the first `frozen` channels pass through.
    if HAS_MASK:
        mask_off = b.to(tl.int64) * smb + oy.to(tl.int64) * smy + ox.to(tl.int64) * smx
        fire = tl.load(mask_ptr + mask_off, mask=pix_ok, other=0.0).to(tl.float32)
        dx = dx * fire[:, None]
    new = tl.where((ch >= frozen)[None, :], centre + dx, centre)
    out_off = b.to(tl.int64) * sob + oy.to(tl.int64) * soy + ox.to(tl.int64) * sox
    tl.store(out_ptr + out_off[:, None] + ch[None, :], new.to(out_ptr.dtype.element_ty), mask=io_ok)


def _padded(t: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """t zero-padded at the end of every axis to `shape`."""
    padded = torch.zeros(shape, dtype=dtype, device=t.device)
    padded[tuple(slice(0, n) for n in t.shape)] = t.to(dtype)
    return padded


def update_triton(
    folded: FoldedUpdate,
    state: torch.Tensor,
    mask: torch.Tensor | None,
    pads: tuple[int, int, int, int],
    dot_bf16: bool,
    block: tuple[int, int] = (2, 32),
    hidden_block: int = 32,
    num_warps: int = 4,
) -> torch.Tensor:
    """One NCA update of a (B, C, H, W) state on the GPU (or under the interpreter).

    pads as in `update_cpu`; dot_bf16 picks bf16 operands (else fp32, IEEE); block is
    (BLOCK_Y, BLOCK_X) output pixels per program. The output has the state's dtype,
    channels-last.
    """
    top, bottom, left, right = pads
    state = state.contiguous(memory_format=torch.channels_last)
    batch, channels, h_in, w_in = state.shape
    h_out, w_out = h_in + top + bottom - 2, w_in + left + right - 2
    hidden = folded.hidden
    c_p = max(16, triton.next_power_of_2(channels))
    h_p = triton.cdiv(hidden, hidden_block) * hidden_block
    wdt = torch.bfloat16 if dot_bf16 else torch.float32
    f32 = torch.float32

    w_taps = folded.perception_weight.detach().permute(2, 3, 1, 0).reshape(9, channels, channels)
    wp = _padded(w_taps, (9, c_p, c_p), wdt)
    bp = _padded(folded.perception_bias.detach(), (batch, c_p), f32)
    w1 = folded.fc1_weight.detach()
    w1a = _padded(w1[:, :channels].T, (c_p, h_p), wdt)
    w1b = _padded(w1[:, channels:].T, (c_p, h_p), wdt)
    b1 = _padded(folded.fc1_bias.detach(), (batch, h_p), f32)
    # The mean over hidden channels of fc1, from the operands as the products see them.
    mean_a = w1a.float().sum(dim=1) / hidden
    mean_b = w1b.float().sum(dim=1) / hidden
    mean_bias = folded.fc1_bias.detach().float().mean(dim=1).contiguous()
    g = _padded(folded.norm_weight.detach(), (h_p,), f32)
    beta = _padded(folded.norm_bias.detach(), (h_p,), f32)
    w2 = _padded(folded.fc2_weight.detach().T, (h_p, c_p), wdt)
    b2 = _padded(folded.fc2_bias.detach(), (c_p,), f32)

    out = torch.empty(
        (batch, channels, h_out, w_out),
        dtype=state.dtype,
        device=state.device,
        memory_format=torch.channels_last,
    )
    if mask is not None:
        fire = mask[:, 0]
        mask_strides = fire.stride()
    else:
        fire, mask_strides = out, (0, 0, 0)
    block_y, block_x = block
    grid = (triton.cdiv(w_out, block_x), triton.cdiv(h_out, block_y), batch)
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    _nca_update_kernel[grid](
        state,
        out,
        fire,
        wp,
        bp,
        w1a,
        w1b,
        b1,
        mean_a,
        mean_b,
        mean_bias,
        g,
        beta,
        w2,
        b2,
        h_in,
        w_in,
        h_out,
        w_out,
        top,
        left,
        state.stride(0),
        state.stride(2),
        state.stride(3),
        out.stride(0),
        out.stride(2),
        out.stride(3),
        *mask_strides,
        channels,
        folded.frozen,
        hidden,
        folded.norm_eps,
        C_P=c_p,
        H_P=h_p,
        HB=hidden_block,
        BLOCK_Y=block_y,
        BLOCK_X=block_x,
        REFLECT=folded.reflect,
        HAS_MASK=mask is not None,
        # Operands are rounded to ROUND, then multiplied as OP (see the module notes).
        ROUND=tl.bfloat16 if dot_bf16 else tl.float32,
        OP=tl.bfloat16 if dot_bf16 and not interpreted else tl.float32,
        # IEEE for fp32 operands; bf16 operands take the tensor-core default.
        PRECISION="tf32" if dot_bf16 else "ieee",
        num_warps=num_warps,
    )
    return out
