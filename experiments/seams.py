"""Seam check of a tiled OME-Zarr output, with injected seams as positive controls.

The output is checked at the tile size it was computed with; then copies of it with
alternate tiles brightened by a few grey levels show how large a seam the check sees.

    gigasynth synth --checkpoint builtin:tiny-pathology --size 768x768 --tile 128 \
        --steps 10 --seed 5 --out runs/experiments/seams/tp-768-t128.ome.zarr
    nice -n 15 python experiments/seams.py runs/experiments/seams/tp-768-t128.ome.zarr \
        --tile 128 --levels 0 1 2 4 --whole runs/experiments/seams/tp-768-whole.png

(--whole: the same seed sampled as one image by `gigasynth sample`, compared pixel by pixel.)

Writes docs/results/seams.json.
"""

from __future__ import annotations

import argparse

import numpy as np
from common import save_results

from gigasynth.eval import open_regions, seam_check
from gigasynth.eval.inputs import ArrayRegions
from gigasynth.images import read_rgb


def with_seams(image: np.ndarray, tile: int, level: int) -> np.ndarray:
    """Alternate tiles (checkerboard) brightened by `level` grey levels."""
    out = image.astype(np.int16)
    for ty in range(0, image.shape[0], tile):
        for tx in range(0, image.shape[1], tile):
            if (ty // tile + tx // tile) % 2:
                out[ty : ty + tile, tx : tx + tile] += level
    return np.clip(out, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zarr", help="OME-Zarr output of gigasynth synth")
    parser.add_argument("--tile", type=int, required=True, help="the tile size it was made with")
    parser.add_argument(
        "--levels",
        type=int,
        nargs="+",
        default=[0, 1, 2, 4],
        help="injected seam sizes in grey levels (0: the output as written)",
    )
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--whole", help="PNG of the same seed sampled as one image")
    args = parser.parse_args()
    regions = open_regions(args.zarr)
    image = regions.read(0, 0, regions.height, regions.width)
    record = {
        "output": args.zarr,
        "size": [regions.width, regions.height],
        "tile": args.tile,
        "checks": [],
    }
    for level in args.levels:
        source = regions if level == 0 else ArrayRegions(with_seams(image, args.tile, level))
        stats = seam_check(source, args.tile, args.windows)
        record["checks"].append({"injected_levels": level, "stats": [s.to_dict() for s in stats]})
        for s in stats:
            print(
                f"+{level} levels, {s.direction}: border {s.border_mean:.2f} inside "
                f"{s.inside_mean:.2f} ratio {s.ratio:.3f} z {s.z:.1f} (n={s.pairs} pairs)",
                flush=True,
            )
    if args.whole:
        diff = np.abs(read_rgb(args.whole).astype(np.int16) - image)
        record["whole_image"] = {
            "png": args.whole,
            "max_abs_diff": int(diff.max()),
            "pixels_differing": float((diff > 0).any(-1).mean()),
        }
        print(
            f"tiled vs whole image: max |diff| {diff.max()}, "
            f"{(diff > 0).any(-1).mean():.6f} of pixels differ",
            flush=True,
        )
    save_results("seams", record)


if __name__ == "__main__":
    main()
