"""Check and time every NCA update variant on a GPU in one run.

    python tools/gpu_kernels.py --out DIR        # on a CUDA machine
    TRITON_INTERPRET=1 python tools/gpu_kernels.py --smoke --out DIR   # logic, on CPU

1. Correctness of the fused Triton kernel against the plain PyTorch ops on the same
   device, at the paper's sizes: fp32 operands (IEEE; TF32 off for the reference)
   within 1e-5 relative, bf16 operands within 1e-2; whole image, a tile with valid
   borders and a corner tile; the tile equals the crop of the whole image; the keyed
   fire mask computed on the GPU equals the CPU's bit for bit.
2. Timing, bf16 state and products: each kernel variant (pixel block, hidden chunk,
   warps) at 2048^2, the best of them at 1024^2 and 64 x 64^2, the plain ops, and
   (with --compile) the plain ops under torch.compile; Mpx-steps/s and efficiency
   against the bf16 matmul rate measured in the same run.
Writes DIR/gpu_kernels.json and prints it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from pathlib import Path

import torch

from gigasynth.bench.ceiling import matmul_rates
from gigasynth.bench.timing import time_interleaved
from gigasynth.config import preset
from gigasynth.geometry import Borders, Window
from gigasynth.kernels.folded import border_pads
from gigasynth.kernels.triton_update import update_triton
from gigasynth.models import build_model, macs_per_pixel
from gigasynth.models.nca import fire_mask

# (block (rows, columns) of output pixels per program, hidden chunk, warps)
VARIANTS = [
    ((2, 32), 32, 4),
    ((1, 64), 32, 4),
    ((1, 64), 64, 4),
    ((2, 64), 32, 8),
    ((4, 32), 32, 8),
    ((1, 128), 32, 8),
    ((4, 64), 64, 8),
]
CASES = {
    "whole": (Borders(), (0, 0)),
    "tile": (Borders(False, False, False, False), (1, 1)),
    "corner": (Borders(True, False, True, False), (0, 0)),
}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def plain(update, state, cond, mask, borders):
    update.fast_path = False
    with torch.no_grad():
        out = update(state, cond, mask, borders)
    update.fast_path = True
    return out


def correctness(name: str, side: int, device: torch.device, smoke: bool) -> dict:
    config = preset(name)
    torch.manual_seed(0)
    model = build_model(config, zero_output=False).to(device).eval()
    with torch.no_grad():  # non-trivial norm affine and biases
        for p in model.nca.update.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    update = model.nca.update
    batch = 2
    state = torch.randn(batch, config.channels, side, side, device=device)
    t_frac = torch.full((batch,), 0.5, device=device)
    cond = model.nca.cond(t_frac, 0.25).detach()
    report = {}
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    small = {"block": (16, 16), "hidden_block": 32} if smoke else {}
    try:
        whole_out = None
        for case, (borders, (y0, x0)) in CASES.items():
            h = side - (not borders.top) - (not borders.bottom)
            w = side - (not borders.left) - (not borders.right)
            mask = fire_mask(
                list(range(batch)),
                [150] * batch,
                3,
                config.fire_probability,
                h,
                w,
                Window(y0, x0),
                device,
            )
            mask_cpu = fire_mask(
                list(range(batch)),
                [150] * batch,
                3,
                config.fire_probability,
                h,
                w,
                Window(y0, x0),
                "cpu",
            )
            expected = plain(update, state, cond, mask, borders)
            with torch.no_grad():
                folded = update.folded(cond)
                pads = border_pads(borders)
                got32 = update_triton(folded, state, mask, pads, dot_bf16=False, **small)
                got16 = update_triton(folded, state, mask, pads, dot_bf16=True, **small)
                got16_state = update_triton(
                    folded, state.bfloat16(), mask, pads, dot_bf16=True, **small
                )
            entry = {
                "fire_mask_identical_to_cpu": bool(torch.equal(mask.cpu(), mask_cpu)),
                "fp32_rel_err": rel_err(got32, expected),
                "bf16_products_rel_err": rel_err(got16, expected),
                "bf16_state_rel_err": rel_err(got16_state, expected),
                "frozen_channels_exact": bool(torch.equal(got32[:, :3], expected[:, :3])),
            }
            if case == "whole":
                whole_out = got32
            else:
                # Window (y0, x0) of the canvas: the crop of the whole-image update.
                crop = whole_out[..., y0 : y0 + h, x0 : x0 + w]
                entry["tile_vs_whole_max_abs"] = (got32 - crop).abs().max().item()
            entry["ok"] = (
                entry["fire_mask_identical_to_cpu"]
                and entry["fp32_rel_err"] < 1e-5
                and entry["bf16_products_rel_err"] < 1e-2
                and entry["bf16_state_rel_err"] < 1e-2
                and entry["frozen_channels_exact"]
                and entry.get("tile_vs_whole_max_abs", 0.0) < 1e-5
            )
            report[case] = entry
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return report


def time_shape(
    update,
    model,
    config,
    batch: int,
    side: int,
    variants,
    device,
    reps: int,
    compile_naive: bool,
    ceiling: float,
) -> dict:
    """Every variant, the plain ops (and compiled plain ops) on one bf16 state, interleaved."""
    dtype = torch.bfloat16
    state = torch.randn(batch, config.channels, side, side, device=device, dtype=dtype)
    state = state.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        cond = model.nca.cond(torch.full((batch,), 0.5, device=device, dtype=dtype), 0.0)
        mask = fire_mask(
            list(range(batch)),
            [150] * batch,
            0,
            config.fire_probability,
            side,
            side,
            Window(),
            device,
        ).to(dtype)
        folded = update.folded(cond)
    pads = border_pads(Borders())

    def kernel(block, hidden_block, warps):
        return lambda: update_triton(
            folded, state, mask, pads, True, block=block, hidden_block=hidden_block, num_warps=warps
        )

    calls = {variant_key(v): kernel(*v) for v in variants}
    calls["naive"] = lambda: plain(update, state, cond, mask, Borders())
    if compile_naive:
        naive = copy.deepcopy(update)
        naive.fast_path = False
        compiled = torch.compile(naive)
        calls["naive+compile"] = lambda: compiled(state, cond, mask)
    failures, runnable = {}, {}
    for key, fn in calls.items():
        try:
            with torch.no_grad():
                fn()
            runnable[key] = fn
        except Exception as exc:  # a variant that does not compile or fit is reported
            failures[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    with torch.no_grad():
        timings = time_interleaved(runnable, device, reps)
    pixels = batch * side * side
    flops = 2 * macs_per_pixel(config)
    rates = {}
    for key, t in timings.items():
        rate = pixels / t.best_s
        rates[key] = {
            "mpx_steps_per_s": rate / 1e6,
            "mpx_steps_per_s_median": pixels / t.median_s / 1e6,
            "efficiency": flops * rate / ceiling,
        }
    best = max(
        (r["mpx_steps_per_s"] for k, r in rates.items() if k.startswith("kernel")), default=None
    )
    naive_rate = rates.get("naive", {}).get("mpx_steps_per_s")
    return {
        "batch": batch,
        "side": side,
        "rates": rates,
        "failures": failures,
        "best_kernel_over_naive": best / naive_rate if best and naive_rate else None,
    }


def variant_key(variant) -> str:
    (rows, cols), hidden_block, warps = variant
    return f"kernel block={rows}x{cols} hb={hidden_block} warps={warps}"


def timing(
    name: str, device: torch.device, smoke: bool, compile_naive: bool, ceiling: float
) -> dict:
    """All variants at the largest tile; the fastest of them at the other shapes."""
    config = preset(name)
    torch.manual_seed(0)
    model = build_model(config, zero_output=False).to(device, torch.bfloat16).eval()
    update = model.nca.update
    reps = 2 if smoke else 10
    shapes = [(1, 24), (2, 16)] if smoke else [(1, 2048), (1, 1024), (64, 64)]
    variants = VARIANTS[:2] if smoke else VARIANTS
    results = []
    for batch, side in shapes:
        results.append(
            time_shape(
                update,
                model,
                config,
                batch,
                side,
                variants,
                device,
                reps,
                compile_naive and not smoke,
                ceiling,
            )
        )
        kernel_rates = {
            k: r["mpx_steps_per_s"]
            for k, r in results[-1]["rates"].items()
            if k.startswith("kernel")
        }
        if kernel_rates:
            fastest = max(kernel_rates, key=kernel_rates.get)
            variants = [v for v in variants if variant_key(v) == fastest]
    report = {"shapes": results}
    if device.type == "cuda":
        report["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_out")))
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="toy sizes on whatever device (CPU: set TRITON_INTERPRET=1)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time the plain ops under torch.compile (slow to compile)",
    )
    parser.add_argument("--preset", default="paper-pathology")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        raise SystemExit("no CUDA device: run with --smoke and TRITON_INTERPRET=1 on CPU")
    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "preset": args.preset,
    }
    side = 20 if args.smoke else 256
    result["correctness"] = correctness(args.preset, side, device, args.smoke)
    print(json.dumps({"correctness": result["correctness"]}, indent=2), flush=True)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    rates = matmul_rates(device, dtype, 256 if args.smoke else 8192, 2 if args.smoke else 10)
    result["ceiling_flops"] = max(rates.values())
    result["timing"] = timing(
        args.preset, device, args.smoke, args.compile, result["ceiling_flops"]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_kernels.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
