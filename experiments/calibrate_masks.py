"""Calibrate a cascade's generated tissue masks on a slide's train region.

    python experiments/calibrate_masks.py --cascade gigasynth/builtin/skin.cascade.json

Fits `mask_coverage` (gigasynth.cascade.masks.calibrate_masks: generated fields the size of
the train region get its tissue fraction at 16 µm/px), writes it into the cascade file and
the measurement to docs/results/mask-calibration.json. Only the train region is read.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from common import SLIDE, save_results

from gigasynth.atomic import atomic_write_bytes
from gigasynth.cascade import load_cascade
from gigasynth.cascade.masks import calibrate_masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cascade", required=True, type=Path, help="cascade.json to update")
    parser.add_argument("--slide", default=str(SLIDE))
    args = parser.parse_args()
    calibration = calibrate_masks(args.slide, "train")
    doc = json.loads(args.cascade.read_text())
    doc["mask_coverage"] = calibration.coverage
    atomic_write_bytes(args.cascade, (json.dumps(doc, indent=2) + "\n").encode())
    load_cascade(args.cascade)  # still a valid cascade
    save_results("mask-calibration", {"cascade": doc.get("name"), **asdict(calibration)})
    print(json.dumps(asdict(calibration), indent=2))


if __name__ == "__main__":
    main()
