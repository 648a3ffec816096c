"""`gigasynth sample`: whole-image sampling, inpainting and super-resolution to PNG."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gigasynth.checkpoint import load_checkpoint
from gigasynth.cli.common import add_sampler_args, parse_size
from gigasynth.cluster.devices import pick_device
from gigasynth.config import ModelConfig
from gigasynth.errors import GigasynthError
from gigasynth.images import read_rgb, to_model_space, to_uint8, write_png
from gigasynth.models import DiffNCA
from gigasynth.sampling import SampleRequest, generate, inpaint, super_resolve, upscale
from gigasynth.synth.job import MAX_WHOLE_IMAGE_PIXELS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="sample one image (or inpaint / upscale one) to PNG")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder or builtin:NAME")
    p.add_argument("--size", help="WIDTHxHEIGHT of the image (unconditional sampling)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output PNG")
    p.add_argument("--image", type=Path, help="input image for --mask or --upscale")
    p.add_argument("--mask", type=Path, help="inpainting mask: white = keep, black = fill")
    p.add_argument("--upscale", type=float, help="super-resolution factor")
    p.add_argument("--t-start", type=int, help="super-resolution: noise level to start from")
    p.add_argument(
        "--condition",
        type=Path,
        help="a conditioned stage's low-resolution input image (PNG, JPEG, TIFF): "
        "the output is it times the stage's downsample factor",
    )
    p.add_argument(
        "--condition-noise",
        type=float,
        help="std of the noise added to the condition (default: the stage's training level)",
    )
    add_sampler_args(p)
    p.set_defaults(func=run)


def _progress(total_desc: str) -> Callable[[int, int], None]:
    bar = tqdm(desc=total_desc, unit="step", dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if done == total:
            bar.close()

    return update


def run(args: argparse.Namespace) -> int:
    if args.out.suffix.lower() != ".png":
        raise GigasynthError(f"--out must be a .png file, not {args.out}")
    device = pick_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, device)
    request = SampleRequest(args.sampler, args.steps, args.eta)
    SampleRequest.build(request, ckpt.model)
    model = ckpt.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    seeds = [args.seed]
    cfg = ckpt.config
    conditioned = getattr(cfg, "condition_channels", 0) > 0
    if args.condition is None and conditioned:
        raise GigasynthError(
            f"{args.checkpoint} is a conditioned stage ({cfg.condition_downsample}x "
            "super-resolution): give its low-resolution input with --condition IMAGE"
        )
    if args.condition is not None:
        if not conditioned:
            raise GigasynthError(
                f"{args.checkpoint} takes no condition (it is not a "
                "conditioned stage); drop --condition"
            )
        if args.size or args.image or args.mask or args.upscale:
            raise GigasynthError(
                "--condition sets the output size; it does not combine "
                "with --size, --image, --mask or --upscale"
            )
        x = _sample_conditioned(args, model, cfg, request, device)
    elif args.mask is not None or args.upscale is not None:
        if args.image is None:
            raise GigasynthError("--mask and --upscale need --image")
        image = to_model_space(read_rgb(args.image)).to(device)
        if args.upscale is not None:
            h, w = image.shape[-2:]
            parse_size(
                f"{round(w * args.upscale)}x{round(h * args.upscale)}", MAX_WHOLE_IMAGE_PIXELS
            )
            x = upscale(
                model, image, args.upscale, seeds, args.t_start, request, _progress("upscale")
            )
        else:
            mask_rgb = read_rgb(args.mask)
            if mask_rgb.shape[:2] != tuple(image.shape[-2:]):
                raise GigasynthError(
                    f"mask is {mask_rgb.shape[1]}x{mask_rgb.shape[0]}, image is "
                    f"{image.shape[-1]}x{image.shape[-2]}"
                )
            mask = torch.from_numpy((mask_rgb.mean(axis=-1) > 127).astype(np.float32))
            x = inpaint(
                model, image, mask[None, None].to(device), seeds, request, _progress("inpaint")
            )
    else:
        if args.size is None:
            raise GigasynthError(
                "--size WIDTHxHEIGHT is required (or --image with --mask or --upscale)"
            )
        width, height = parse_size(args.size, MAX_WHOLE_IMAGE_PIXELS)
        x = generate(model, height, width, seeds, request, device, _progress("sample"))
    path = write_png(args.out, to_uint8(x)[0])
    print(f"wrote {path} ({x.shape[-1]}x{x.shape[-2]}, {ckpt.config.kind}, seed {args.seed})")
    return 0


def _sample_conditioned(
    args: argparse.Namespace,
    model: DiffNCA,
    cfg: ModelConfig,
    request: SampleRequest,
    device: torch.device,
) -> torch.Tensor:
    """The stage's output for the low-resolution image --condition."""
    rgb = read_rgb(args.condition)
    low = to_model_space(rgb).to(device)
    k, f = cfg.condition_channels, cfg.condition_downsample
    if k == 1:
        low = low.mean(dim=1, keepdim=True)
    elif k != low.shape[1]:
        raise GigasynthError(
            f"the stage takes a {k}-channel condition; an image file gives 1 (grey) or 3 (RGB)"
        )
    h, w = low.shape[-2:]
    parse_size(f"{w * f}x{h * f}", MAX_WHOLE_IMAGE_PIXELS)
    return super_resolve(
        model, low, [args.seed], request, _progress("super-resolve"), args.condition_noise
    )
