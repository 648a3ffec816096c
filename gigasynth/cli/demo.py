"""`gigasynth demo`: a synthetic slide region from the bundled model, no downloads."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from tqdm import tqdm

from gigasynth.checkpoint import load_checkpoint
from gigasynth.images import to_uint8, write_png
from gigasynth.sampling import SampleRequest, generate

DEMO_MODEL = "builtin:tiny-pathology"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthesise a slide region with the bundled model")
    p.add_argument("--out", type=Path, default=Path("gigasynth-demo"), help="output folder")
    p.add_argument("--size", type=int, default=384, help="side of the region in px")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    torch.set_grad_enabled(False)
    ckpt = load_checkpoint(DEMO_MODEL)
    model = ckpt.model.to(memory_format=torch.channels_last)
    print(f"model {DEMO_MODEL} ({ckpt.config.kind}, sha256 {ckpt.short_hash}); "
          f"region {args.size}x{args.size} px, DDIM {args.steps} steps, seed {args.seed}")
    bar = tqdm(total=args.steps, desc="denoise", unit="step", dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    x = generate(model, args.size, args.size, [args.seed], SampleRequest("ddim", args.steps),
                 progress=progress)
    bar.close()
    png = write_png(args.out / "demo.png", to_uint8(x)[0])
    elapsed = time.perf_counter() - start
    print(f"wrote {png.resolve()} in {elapsed:.0f} s")
    print(f"view it: open {png} in any image viewer")
    return 0
