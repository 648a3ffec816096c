"""The cascade's cost against the single-scale model's, as a ratio within one run.

Synthesises the same field (side `--size` px at 0.998 µm/px, generated layout for the
cascade) with the cascade (each stage's own sampler steps) and with the single-scale
model (DDIM `--single-steps`), alternating `--repeats` times through the tiled engine
on one Dask worker, and reports wall seconds per run, the ratio, and the projection to
one gigapixel (seconds x 1e9 / pixels; the engine's cost is linear in pixels).

    python experiments/cascade_cost.py --size 1024 --repeats 2 --out runs/cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from gigasynth.cascade import Cascade, load_cascade
from gigasynth.cascade.synth import CascadeSettings, synthesize_cascade
from gigasynth.synth import SynthSpec, synthesize


def _stage_pixels(cascade: Cascade, size: int) -> list[dict[str, float | int | None]]:
    """Each stage's µm/px, sampler steps and pixels for a final side of `size` px."""
    rows = []
    later = 1  # the factors of the stages after this one
    for stage in reversed(cascade.stages):
        rows.append({"mpp": stage.mpp, "steps": stage.steps, "pixels": (size // later) ** 2})
        later *= stage.condition_downsample
    return rows[::-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cascade", default="builtin:skin")
    parser.add_argument("--single", default="builtin:tiny-pathology")
    parser.add_argument("--single-steps", type=int, default=50)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cascade = load_cascade(args.cascade)
    times: dict[str, list[float]] = {"cascade": [], "single": []}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            t0 = time.perf_counter()
            synthesize_cascade(
                cascade,
                None,
                Path(tmp) / f"c{k}.ome.zarr",
                CascadeSettings(seed=k, tile=args.tile),
                size=(args.size, args.size),
                workers=1,
            )
            times["cascade"].append(time.perf_counter() - t0)
            spec = SynthSpec(
                args.single, args.size, args.size, k, "ddim", args.single_steps, tile=args.tile
            )
            t0 = time.perf_counter()
            synthesize(spec, Path(tmp) / f"s{k}.ome.zarr", workers=1)
            times["single"].append(time.perf_counter() - t0)
    pixels = args.size**2
    median = {name: statistics.median(values) for name, values in times.items()}
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average": os.getloadavg(),
        "size": args.size,
        "cascade": {
            "ref": args.cascade,
            "stages": _stage_pixels(cascade, args.size),
            "seconds": times["cascade"],
        },
        "single": {"ref": args.single, "steps": args.single_steps, "seconds": times["single"]},
        "ratio_cascade_over_single": median["cascade"] / median["single"],
        "seconds_per_gigapixel": {name: m * 1e9 / pixels for name, m in median.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
