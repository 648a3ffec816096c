"""Synthetic fields beside the real test region at the same µm/px, for RESULTS' pictures.

    python experiments/side_by_side.py --fields runs/experiments/seeds-skin-ddim10 --name skin

Top: level 0 of the first four fields (seed-0 ... seed-3, 512 px each) at 0.998 µm/px;
below: the test region read at the same pixel size (box-averaged). Half size, as
docs/figures/NAME-vs-test-region.png; and a 128 µm crop of seed 0 beside a 128 µm crop of
the test region, enlarged 3x, as docs/figures/NAME-vs-test-zoom.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import FIGURES, SLIDE
from PIL import Image

from gigasynth.data.sources import SlideRegions
from gigasynth.io import open_slide

SIDE = 512


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fields", type=Path, required=True)
    p.add_argument("--name", required=True)
    args = p.parse_args()
    fields = [
        np.asarray(open_slide(args.fields / f"seed-{s}.ome.zarr").read_region(0, 0, 0, SIDE, SIDE))
        for s in range(4)
    ]
    test = SlideRegions(SLIDE, 2.0, "test")
    real = np.asarray(test.read(0, 0, test.height, min(test.width, 2 * SIDE)))
    canvas = np.full((SIDE + 8 + real.shape[0], 4 * SIDE, 3), 255, np.uint8)
    canvas[:SIDE] = np.concatenate(fields, axis=1)
    canvas[SIDE + 8 :, : real.shape[1]] = real
    overview = Image.fromarray(canvas)
    overview = overview.resize((overview.width // 2, overview.height // 2), Image.Resampling.BOX)
    FIGURES.mkdir(parents=True, exist_ok=True)
    overview.save(FIGURES / f"{args.name}-vs-test-region.png", optimize=True)
    zoom = np.concatenate([fields[0][200:328, 200:328], real[100:228, 500:628]], axis=1)
    Image.fromarray(zoom).resize(
        (zoom.shape[1] * 3, zoom.shape[0] * 3), Image.Resampling.NEAREST
    ).save(FIGURES / f"{args.name}-vs-test-zoom.png", optimize=True)


if __name__ == "__main__":
    main()
