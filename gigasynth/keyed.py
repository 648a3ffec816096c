"""Keyed (counter-based) random numbers: invariant I3 of the tiled engine.

Every random number is a pure function of (seed, stream, diffusion step, NCA step,
channel, global y, global x). There is no generator state, so a tile computes the
same numbers for its pixels as the whole image does, in any order, on any worker.

The hash works on 32-bit words held in int64 tensors. Multiplication is split into
16-bit halves so that no intermediate exceeds 2**63: the result is exact on every
device and dtype backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import IntEnum
from typing import Any

import torch

from gigasynth.geometry import Window

_MASK = 0xFFFFFFFF
_M1 = 0x7FEB352D
_M2 = 0x846CA68B


class Stream(IntEnum):
    """Independent random streams; a new use of randomness gets a new member."""

    INIT_NOISE = 1
    STEP_NOISE = 2
    FIRE = 3
    TRAIN_NOISE = 4
    TRAIN_TIME = 5
    INPAINT_NOISE = 6
    CONDITION_NOISE = 7
    TISSUE_MASK = 8  # gigasynth.cascade.masks: procedural tissue masks


def _mul32(x: torch.Tensor, m: int) -> torch.Tensor:
    lo = x * (m & 0xFFFF)
    hi = ((x * (m >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _MASK


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit avalanche hash (xorshift-multiply, two rounds)."""
    x = x ^ (x >> 16)
    x = _mul32(x, _M1)
    x = x ^ (x >> 15)
    x = _mul32(x, _M2)
    return x ^ (x >> 16)


def _mix_py(x: int) -> int:
    x ^= x >> 16
    x = (x * _M1) & _MASK
    x ^= x >> 15
    x = (x * _M2) & _MASK
    return x ^ (x >> 16)


def mix_int(*words: int) -> int:
    """Hash a tuple of Python ints to one 32-bit word (the same hash as on tensors)."""
    h = 0
    for w in words:
        h = _mix_py(h ^ (int(w) & _MASK))
    return h


def key_words(
    seeds: Sequence[int] | int, stream: Stream, t: Sequence[int] | int, s: int
) -> list[int]:
    """One 32-bit key per sample from its seed, the stream, its diffusion step and NCA step."""
    seeds_l = [seeds] if isinstance(seeds, int) else list(seeds)
    t_l = [t] * len(seeds_l) if isinstance(t, int) else list(t)
    if len(t_l) != len(seeds_l):
        raise ValueError("one diffusion step per seed expected")
    return [mix_int(seed, int(stream), tt, s) for seed, tt in zip(seeds_l, t_l, strict=True)]


def keyed_bits(
    keys: Sequence[int],
    channels: int,
    height: int,
    width: int,
    window: Window = Window(),
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Random 32-bit words of shape (len(keys), channels, height, width) as int64.

    Pixel (y, x) of the array is pixel (window.y0 + y, window.x0 + x) of the canvas.
    """
    k = torch.tensor(list(keys), dtype=torch.int64, device=device).view(-1, 1, 1, 1)
    c = torch.arange(channels, dtype=torch.int64, device=device).view(1, -1, 1, 1)
    y = torch.arange(window.y0, window.y0 + height, dtype=torch.int64, device=device)
    x = torch.arange(window.x0, window.x0 + width, dtype=torch.int64, device=device)
    h = _mix(k ^ c)
    h = _mix(h ^ (y.view(1, 1, -1, 1) & _MASK))
    return _mix(h ^ (x.view(1, 1, 1, -1) & _MASK))


def _to_unit(bits: torch.Tensor) -> torch.Tensor:
    """Map 32-bit words to floats in (0, 1), never exactly 0 or 1."""
    return ((bits >> 8).to(torch.float64) + 0.5) / float(1 << 24)


def keyed_uniform(*args: Any, **kwargs: Any) -> torch.Tensor:
    """Uniform floats in (0, 1), float32, keyed as in `keyed_bits`."""
    return _to_unit(keyed_bits(*args, **kwargs)).to(torch.float32)


def keyed_normal(
    keys: Sequence[int],
    channels: int,
    height: int,
    width: int,
    window: Window = Window(),
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Standard normal floats (Box-Muller on two keyed words), float32."""
    bits = keyed_bits(keys, 2 * channels, height, width, window, device)
    u1 = _to_unit(bits[:, 0::2])
    u2 = _to_unit(bits[:, 1::2])
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return z.to(torch.float32)
