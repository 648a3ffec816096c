"""Bundle a trained cascade with the package: each stage's checkpoint copied byte for byte
(its hash unchanged) as gigasynth/builtin/NAME-STAGE.{safetensors,json} with a name and
provenance in its metadata, and NAME.cascade.json naming them as builtin stages.

    python tools/bundle_cascade.py --name skin \
        --stage layout=runs/coarse4/checkpoint:25 --stage sr4=runs/sr4/checkpoint:10

Each --stage is LABEL=CHECKPOINT:DDIM_STEPS, coarse to fine. The card (NAME.md) is
written by hand: it states the data, commands, iterations, CPU time and figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from gigasynth.atomic import atomic_write_bytes
from gigasynth.cascade import load_cascade
from gigasynth.checkpoint import read_document

BUILTIN = Path(__file__).resolve().parents[1] / "gigasynth" / "builtin"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--stage", action="append", required=True, metavar="LABEL=CKPT:STEPS")
    parser.add_argument("--trained-on", default="cmu_small_region.svs, train region")
    args = parser.parse_args()
    stages = []
    for item in args.stage:
        label, rest = item.split("=", 1)
        ckpt, steps = rest.rsplit(":", 1)
        name = f"{args.name}-{label}"
        doc = read_document(ckpt)
        doc["meta"] = {**doc["meta"], "name": name, "trained_on": args.trained_on}
        shutil.copyfile(Path(ckpt) / "model.safetensors", BUILTIN / f"{name}.safetensors")
        text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(BUILTIN / f"{name}.json", text.encode())
        stages.append({"checkpoint": f"builtin:{name}", "sampler": "ddim", "steps": int(steps)})
    cascade = {"name": args.name, "layout": "generated", "stages": stages}
    path = BUILTIN / f"{args.name}.cascade.json"
    atomic_write_bytes(path, (json.dumps(cascade, indent=2) + "\n").encode())
    print(json.dumps(load_cascade(f"builtin:{args.name}").describe(), indent=2))


if __name__ == "__main__":
    main()
