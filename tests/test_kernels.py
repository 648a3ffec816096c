"""The fused update paths compute the plain path's function (gigasynth.kernels).

CPU: the banded oneDNN path against the plain ops, on whole images and tiles.
Triton: the fused kernel against the plain ops, on the GPU when there is one, else
under Triton's CPU interpreter (TRITON_INTERPRET=1, set before triton is imported).
"""

import copy
import os

import pytest
import torch

from gigasynth.config import preset
from gigasynth.geometry import Borders, Window
from gigasynth.kernels import set_fast_path
from gigasynth.kernels.cpu import update_cpu
from gigasynth.kernels.folded import border_pads
from gigasynth.models import build_model
from gigasynth.models.nca import NCAUpdate, fire_mask

from .conftest import MICRO

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

NO_BORDERS = Borders(False, False, False, False)
CORNER = Borders(top=True, bottom=False, left=False, right=True)


def _update(channels: int, hidden: int, padding: str = "reflect", seed: int = 0) -> NCAUpdate:
    """An update with non-trivial weights everywhere (also the norm's affine)."""
    torch.manual_seed(seed)
    update = NCAUpdate(channels, 4, hidden, 3, padding)
    with torch.no_grad():
        for p in update.parameters():
            p.normal_(0.0, 0.15)
        update.rule.norm.weight.add_(1.0)
    return update.eval()


def _plain(update, state, cond, mask, borders):
    update.fast_path = False
    try:
        with torch.no_grad():
            return update(state, cond, mask, borders)
    finally:
        update.fast_path = True


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def _inputs(update: NCAUpdate, batch: int, h: int, w: int, borders: Borders, seed: int = 1):
    torch.manual_seed(seed)
    channels = update.perception.channels
    state = torch.randn(batch, channels, h, w)
    cond = torch.randn(batch, 4)
    out_h = h - (not borders.top) - (not borders.bottom)
    out_w = w - (not borders.left) - (not borders.right)
    mask = fire_mask(list(range(batch)), [7] * batch, 2, 0.5, out_h, out_w, Window(3, 5), "cpu")
    return state, cond, mask


@pytest.mark.parametrize(
    ("channels", "hidden", "padding", "borders"),
    [
        (12, 16, "reflect", Borders()),
        (12, 16, "reflect", NO_BORDERS),
        (12, 16, "reflect", CORNER),
        (24, 40, "constant", CORNER),
        (96, 396, "reflect", Borders()),
    ],
)
def test_cpu_path_matches_plain_ops(channels, hidden, padding, borders):
    update = _update(channels, hidden, padding)
    state, cond, mask = _inputs(update, 2, 11, 13, borders)
    for m in (None, mask):
        expected = _plain(update, state, cond, m, borders)
        with torch.no_grad():
            got = update(state, cond, m, borders)
        assert got.shape == expected.shape
        assert _rel(got, expected) < 1e-5
        assert torch.equal(got[:, :3], expected[:, :3])  # frozen channels untouched
    # Cells that do not fire keep their state exactly.
    keep = (mask == 0).expand_as(got)
    centre = state[
        ...,
        (not borders.top) : state.shape[-2] - (not borders.bottom),
        (not borders.left) : state.shape[-1] - (not borders.right),
    ]
    assert torch.equal(got[keep], centre[keep])


def test_cpu_path_on_a_tile_equals_the_whole_image():
    """Any band size, any tile: the crop of the whole update (paper sizes)."""
    update = _update(96, 396)
    state, cond, mask = _inputs(update, 1, 40, 47, Borders())
    folded = update.folded(cond)
    with torch.no_grad():
        whole = update_cpu(folded, state, mask, border_pads(Borders()))
        for band in (4096, 57):
            for y0, x0, h, w, borders in ((5, 7, 20, 30, NO_BORDERS), (0, 17, 12, 30, CORNER)):
                tile = state[
                    ..., y0 - (not borders.top) : y0 + h + 1, x0 - 1 : x0 + w + (not borders.right)
                ]
                local = update_cpu(
                    folded,
                    tile,
                    mask[..., y0 : y0 + h, x0 : x0 + w],
                    border_pads(borders),
                    band_pixels=band,
                )
                assert (local - whole[..., y0 : y0 + h, x0 : x0 + w]).abs().max() < 1e-5


def test_model_tiles_equal_whole_image_on_the_fast_path():
    torch.manual_seed(0)
    model = build_model(MICRO, zero_output=False).eval()
    halo = MICRO.halo
    x = torch.randn(1, 3, 41, 53)
    with torch.no_grad():
        whole = model(x, [17], [5])
        y0, x0, h, w = 9, 12, 20, 25
        tile = x[..., y0 - halo : y0 + h + halo, x0 - halo : x0 + w + halo]
        local = model(tile, [17], [5], Window(y0 - halo, x0 - halo), NO_BORDERS)
        set_fast_path(model, False)
        plain = model(x, [17], [5])
    assert (local - whole[..., y0 : y0 + h, x0 : x0 + w]).abs().max() < 1e-5
    assert _rel(whole, plain) < 1e-5


def test_fast_path_only_in_inference_and_can_be_forced_off(monkeypatch):
    """The fast path returns channels-last; the plain ops keep the input's NCHW layout."""
    update = _update(12, 16)
    state, cond, mask = _inputs(update, 1, 6, 7, Borders())
    with torch.no_grad():
        assert update(state, cond, mask).is_contiguous(memory_format=torch.channels_last)
        monkeypatch.setenv("GIGASYNTH_PLAIN_UPDATE", "1")
        assert update(state, cond, mask).is_contiguous()
        monkeypatch.delenv("GIGASYNTH_PLAIN_UPDATE")
        update.fast_path = False
        assert update(state, cond, mask).is_contiguous()
        update.fast_path = True
    trained = update(state, cond, mask)  # grad enabled: plain ops, differentiable
    assert trained.is_contiguous() and trained.requires_grad
    with torch.no_grad():  # bf16 on CPU has no fast path: plain ops, same dtype
        assert (
            update.to(torch.bfloat16)(state.bfloat16(), cond.bfloat16(), mask.bfloat16()).dtype
            == torch.bfloat16
        )


# --- Triton: the fused kernel -------------------------------------------------------

triton_update = pytest.importorskip(
    "gigasynth.kernels.triton_update", reason="triton is not installed"
)
DEVICE = "cuda" if HAS_CUDA else "cpu"


def _triton(update, state, cond, mask, borders, dot_bf16, **kw):
    dev = torch.device(DEVICE)
    with torch.no_grad():
        out = triton_update.update_triton(
            copy.deepcopy(update).to(dev).folded(cond.to(dev)),
            state.to(dev),
            None if mask is None else mask.to(dev),
            border_pads(borders),
            dot_bf16,
            **kw,
        )
    return out.cpu()


# (block, hidden_block): one program per sample under the interpreter; hidden 20 is
# not a multiple of 16, channels 12 not a power of two (both padded with zeros).
SMALL = {"block": (16, 16), "hidden_block": 16}


@pytest.mark.parametrize(
    ("padding", "borders", "use_mask"),
    [
        ("reflect", Borders(), True),
        ("reflect", CORNER, False),
        ("constant", Borders(), True),
    ],
)
def test_triton_kernel_matches_plain_ops_fp32(padding, borders, use_mask):
    update = _update(12, 20, padding)
    state, cond, mask = _inputs(update, 2, 9, 12, borders)
    mask = mask if use_mask else None
    expected = _plain(update, state, cond, mask, borders)
    got = _triton(update, state, cond, mask, borders, dot_bf16=False, **SMALL)
    assert got.shape == expected.shape
    assert _rel(got, expected) < 1e-5
    assert torch.equal(got[:, :3], expected[:, :3])
    if mask is not None:
        keep = (mask == 0).expand_as(got)
        assert torch.equal(got[keep], expected[keep])


def test_triton_kernel_bf16_products_and_bf16_state():
    update = _update(12, 20)
    state, cond, mask = _inputs(update, 1, 10, 14, NO_BORDERS)
    expected = _plain(update, state, cond, mask, NO_BORDERS)
    got = _triton(update, state, cond, mask, NO_BORDERS, dot_bf16=True, **SMALL)
    assert got.dtype == torch.float32 and _rel(got, expected) < 1e-2
    got16 = _triton(update, state.bfloat16(), cond, mask, NO_BORDERS, dot_bf16=True, **SMALL)
    assert got16.dtype == torch.bfloat16 and _rel(got16, expected) < 1e-2


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU: the model's CUDA dispatch")
def test_model_on_gpu_uses_the_kernel_and_tiles_match():
    model = build_model(preset("tiny"), zero_output=False).eval()
    x = torch.randn(1, 3, 96, 80)
    with torch.no_grad():
        expected = model(x, [40], [3])  # CPU fast path, float32
        gpu = model.cuda()
        got = gpu(x.cuda(), [40], [3]).cpu()
        halo = preset("tiny").halo
        tile = x[..., 20 - halo : 60 + halo, 30 - halo : 70 + halo].cuda()
        local = gpu(tile, [40], [3], Window(20 - halo, 30 - halo), NO_BORDERS).cpu()
    assert _rel(got, expected) < 1e-4
    assert (local - got[..., 20:60, 30:70]).abs().max() < 1e-5
