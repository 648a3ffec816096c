"""A gallery of procedural tissue masks (gigasynth.cascade.masks) for the docs.

    python experiments/masks_gallery.py --out docs/results/masks.png

Draws 16 seeds (by default 0-15) as a 4 x 4 grid, each a field of 250 x 250 px at
16 µm per pixel (4 x 4 mm, the cascade's coarsest resolution), tissue dark on light glass,
with each mask's tissue fraction printed to stdout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from gigasynth.cascade.masks import generate_tissue_mask
from gigasynth.images import grid, write_png

TISSUE, GLASS, GAP = 70, 235, 4  # grey levels, and the frame between masks in px


def gallery(seeds: list[int], side: int, mpp: float, columns: int) -> np.ndarray:
    """(H, W, 3) uint8: one framed mask per seed, `columns` to a row."""
    tiles = []
    for seed in seeds:
        mask = generate_tissue_mask(seed, side, side, mpp)
        print(f"seed {seed:3d}: {mask.mean():5.1%} tissue")
        grey = np.pad(np.where(mask, TISSUE, GLASS), GAP, constant_values=255)
        tiles.append(np.repeat(grey[:, :, None], 3, axis=2).astype(np.uint8))
    return grid(np.stack(tiles), columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/results/masks.png"))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(16)))
    parser.add_argument("--side", type=int, default=250, help="px per mask side")
    parser.add_argument("--mpp", type=float, default=16.0, help="µm per pixel")
    parser.add_argument("--columns", type=int, default=4)
    args = parser.parse_args()
    image = gallery(args.seeds, args.side, args.mpp, args.columns)
    print(f"wrote {write_png(args.out, image)}")


if __name__ == "__main__":
    main()
