"""The real slide's own figures in each of its regions: what "real-like" spans.

    python experiments/real_regions.py

For train, val and test of the sample slide at 0.998 µm/px (downsample 2): the glass
fraction, glass noise, stains, nuclei, oriented structure and stain balance
(gigasynth.eval.histology), into docs/results/real-regions.json. A synthetic figure is
read against the spread of these three, not against one region's value.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

import numpy as np
from common import SLIDE, save_results

from gigasynth.data.regions import NAMED
from gigasynth.data.sources import SlideRegions
from gigasynth.eval.histology import histology
from gigasynth.eval.slide import _ColourSums


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--downsample", type=float, default=2.0)
    args = p.parse_args()
    record: dict = {"slide": SLIDE.name, "downsample": args.downsample, "regions": {}}
    for name in NAMED:
        regions = SlideRegions(SLIDE, args.downsample, name)
        assert regions.level0_mpp is not None
        mpp = regions.level0_mpp * args.downsample
        image = np.asarray(regions.read(0, 0, regions.height, regions.width))
        sums = _ColourSums()
        sums.add(image, mpp)
        record["mpp"] = mpp
        record["regions"][name] = {
            "region": str(regions.region),
            "size": [regions.width, regions.height],
            "colour": asdict(sums.stats()),
            "histology": asdict(histology([image], mpp)),
        }
    print(save_results("real-regions", record))


if __name__ == "__main__":
    main()
