"""Markdown tables of docs/results/*.json, for docs/RESULTS.md (no number typed by hand).

    python experiments/tables.py > docs/results/tables.md   # every older table
    python experiments/tables.py --write docs/RESULTS.md    # refresh the generated blocks
    python experiments/tables.py --check docs/RESULTS.md    # exit 1 where a block differs

A generated block in a document is the lines between `<!-- generated: NAME -->` and
`<!-- end generated -->`; NAME is a key of BLOCKS (a function of the records). `--check`
is how a test keeps every figure of those blocks equal to its record.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from common import RESULTS


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _budget(train: dict) -> str:
    return (
        f"{train['preset']}, {train['parameters']:,} params, {train['iterations']} it x "
        f"batch {train['batch']}, final loss {train['final_loss_mean_last_logs']:.3f}"
    )


def _kid(r: dict) -> str:
    """KID with its 95 % bootstrap interval where the record has one."""
    interval = r.get("kid_interval")
    kid = f"{r['kid']:.4f}"
    return f"{kid} [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else kid


def quality(task: str) -> list[str]:
    rec = _load(f"quality-{task}")
    if not rec:
        return []
    out = [
        f"### quality-{task} (n={rec['n']} per side, {rec.get('size', 64)} px, "
        f"{rec['sampler']} {rec['steps']} steps)",
        "",
        "| model | FID | KID [95 % CI] | SWD x1e3 | training | sampling s/image |",
        "| --- | ---: | ---: | ---: | --- | ---: |",
    ]
    floor = rec.get("real_vs_real")
    if floor:
        out.append(
            f"| real vs real (floor) | {floor['fid']:.1f} | {_kid(floor)} | "
            f"{floor['swd']:.1f} | - | - |"
        )
    for label, r in rec["models"].items():
        out.append(
            f"| {label} | {r['fid']:.1f} | {_kid(r)} | {r['swd']:.1f} | "
            f"{_budget(r['train'])} | {r['sampling_seconds'] / r['n']:.2f} |"
        )
    return out


def ddim_steps(task: str) -> list[str]:
    rec = _load(f"ddim-steps-{task}")
    if not rec:
        return []
    out = [
        f"### ddim-steps-{task} (n={rec['n']} per side, {rec['sampler']})",
        "",
        "| model | DDIM steps | FID | KID [95 % CI] | SWD x1e3 | s/image |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, rows in rec["models"].items():
        for r in rows:
            out.append(
                f"| {label} | {r['steps']} | {r['fid']:.1f} | {_kid(r)} | "
                f"{r['swd']:.1f} | {r['seconds_per_image']:.2f} |"
            )
    return out


def ood(task: str) -> list[str]:
    rec = _load(f"ood-sizes-{task}")
    if not rec:
        return []
    out = [
        f"### ood-sizes-{task} ({rec['n_crops']} crops of {rec.get('crop', 64)} px per "
        f"scale, DDIM "
        f"{rec['steps']} steps)",
        "",
        "| model | scale | image size | images | FID | KID [95 % CI] | SWD x1e3 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, rows in rec["models"].items():
        for r in rows:
            out.append(
                f"| {label} | {r['scale']}x | {r['size']} | {r['images']} | "
                f"{r['fid']:.1f} | {_kid(r)} | {r['swd']:.1f} |"
            )
    return out


def inpaint(task: str) -> list[str]:
    rec = _load(f"inpaint-{task}")
    if not rec:
        return []
    out = [
        f"### inpaint-{task} (n={rec['n']}, {rec['hole_px']} px hole, DDIM {rec['steps']} "
        "steps; PSNR/SSIM inside the hole)",
        "",
        "| fill | PSNR dB | SSIM |",
        "| --- | ---: | ---: |",
    ]
    for label, r in rec["results"].items():
        out.append(f"| {label} | {r['psnr_db']:.2f} | {r['ssim']:.3f} |")
    return out


def superres(task: str) -> list[str]:
    rec = _load(f"superres-{task}")
    if not rec:
        return []
    start = rec["t_start"] if rec["t_start"] is not None else "T/10"
    out = [
        f"### superres-{task} (n={rec['n']}, from t={start}, DDIM up to {rec['steps']} "
        "steps; whole image)",
        "",
        "| factor | method | PSNR dB | SSIM |",
        "| --- | --- | ---: | ---: |",
    ]
    for factor, rows in rec["results"].items():
        for label, r in rows.items():
            out.append(f"| {factor} | {label} | {r['psnr_db']:.2f} | {r['ssim']:.3f} |")
    return out


def equal_compute() -> list[str]:
    rec = _load("equal-compute")
    if not rec:
        return []
    out = [
        f"### equal-compute-{rec['task']} (each run to the same CPU seconds; learning rate "
        f"chosen by KID against {rec['region']['validation']}-region crops, {rec['sampler']})",
        "",
        "| model | learning rate | iterations | CPU s | validation KID (n) | chosen |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rec["runs"].values():
        chosen = "yes" if rec["chosen"][r["model"]] == r["lr"] else ""
        out.append(
            f"| {r['model']} | {r['lr']:g} | {r['iterations']} | {r['cpu_s']:.0f} | "
            f"{r['validation_kid']:.4f} ({r['n']}) | {chosen} |"
        )
    eq = rec["unet_equal_iterations"]
    out.append(
        f"| unet-equal-iterations | {eq['lr']:g} | {eq['iterations']} | {eq['cpu_s']:.0f} | - | - |"
    )
    return out


def _missing(name: str) -> list[str]:
    """What a generated block shows until its record exists."""
    return [f"(no record docs/results/{name}.json)"]


def _spread(d: dict, digits: int = 3) -> str:
    """'mean ± sd [low, high]' of a Spread record."""
    f = f".{digits}f"
    return f"{d['mean']:{f}} ± {d['std']:{f}} [{d['low']:{f}}, {d['high']:{f}}]"


def _widest(intervals: list) -> str:
    if not intervals:
        return "-"
    width = [b - a for a, b in intervals]
    a, b = intervals[width.index(max(width))]
    return f"[{a:.3f}, {b:.3f}]"


def seeds(name: str) -> list[str]:
    """A model over several seeds (experiments/seeds_eval.py) on val and test."""
    rec = _load(f"seeds-{name}")
    if not rec:
        return _missing(f"seeds-{name}")
    fields = len(rec["seeds"])
    out = [
        f"`{rec['model']}`, {fields} fields of {rec['size']} x {rec['size']} px (seeds "
        f"{rec['seeds'][0]}-{rec['seeds'][-1]}); 32 px crops, n per side, field and zoom; "
        "mean ± sd between fields [lowest, highest field]; the widest of the fields' 95 % "
        "block-bootstrap intervals beside it.",
        "",
        "| region | zoom | n (disjoint real) | KID, all crops | widest interval | KID, tissue "
        "crops | widest interval | tissue crops real / fake (mean) | FID |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for region, data in rec["regions"].items():
        for s in data["summary"]["scales"]:
            tissue = _spread(s["kid_tissue"]) if s["kid_tissue"] else "-"
            if s["kid_tissue"] and s["kid_tissue"]["n"] < fields:
                tissue += f" ({s['kid_tissue']['n']} of {fields} fields)"
            fake_tissue = sum(s["tissue_crops_fake"]) / len(s["tissue_crops_fake"])
            out.append(
                f"| {region} | {s['scale']}x | {s['n']} ({s['real_tiles']}) | "
                f"{_spread(s['kid'])} | {_widest(s['kid_intervals'])} | {tissue} | "
                f"{_widest(s['kid_tissue_intervals'])} | {s['tissue_crops_real']} / "
                f"{fake_tissue:.0f} | {_spread(s['fid'], 1)} |"
            )
    out += ["", "| region | octave | band energy synthetic / real |", "| --- | --- | ---: |"]
    for region, data in rec["regions"].items():
        for b in data["summary"]["bands"]:
            out.append(f"| {region} | {b['low_px']}-{b['high_px']} px | {_spread(b['ratio'], 2)} |")
    out += [
        "",
        "| region | glass (background) real | glass synthetic | glass noise real / "
        "synthetic | haematoxylin OD real / synthetic | eosin OD real / synthetic |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for region, data in rec["regions"].items():
        summary = data["summary"]
        glass, h, e = (
            summary[k] for k in ("background_fraction", "haematoxylin_mean", "eosin_mean")
        )
        noise = summary["glass_std"]
        noise_text = (
            f"{noise['real']:.2f} / {_spread(noise['fake'], 2)}"
            if noise["real"] is not None and noise["fake"] is not None
            else "-"
        )
        out.append(
            f"| {region} | {glass['real']:.3f} | {_spread(glass['fake'])} | {noise_text} | "
            f"{h['real']:.3f} / {_spread(h['fake'])} | {e['real']:.3f} / {_spread(e['fake'])} |"
        )
    out += [
        "",
        "| region | nuclei per mm² of tissue real / synthetic | nucleus elongation | "
        "coherence (2 µm) | eosin-dominant share of tissue |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for region, data in rec["regions"].items():
        cells = []
        for key, digits in (
            ("nuclei_per_mm2", 0),
            ("nucleus_elongation", 2),
            ("coherence", 3),
            ("eosin_dominant", 3),
        ):
            h = data["summary"]["histology"][key]
            real = "-" if h["real"] is None else f"{h['real']:.{digits}f}"
            fake = "-" if h["fake"] is None else _spread(h["fake"], digits)
            cells.append(f"{real} / {fake}")
        out.append(f"| {region} | " + " | ".join(cells) + " |")
    c = rec["copies"]
    out += [
        "",
        f"Copy check against the train region ({c['crop']} px tissue crops, relative detail "
        f"distance): synthetic to train median {c['synthetic']['median']:.3f} (min "
        f"{c['synthetic']['minimum']:.3f}, n = {c['synthetic']['n']}), train to train median "
        f"{c['internal']['median']:.3f} (5th percentile {c['internal']['p05']:.3f}, n = "
        f"{c['internal']['n']}); {c['copied_share']:.0%} of synthetic crops under that "
        f"percentile: {'flagged as copying' if c['flagged'] else 'not flagged'}.",
        "",
        f"Synthesis per field: {min(rec['synth_seconds']):.0f}-{max(rec['synth_seconds']):.0f} s "
        f"(`{rec['command']}`).",
    ]
    return out


def mask_calibration() -> list[str]:
    rec = _load("mask-calibration")
    if not rec:
        return _missing("mask-calibration")
    return [
        "| cascade | slide | region (level-0 px) | at | tissue fraction | fitted "
        "mask_coverage | generated median |",
        "| --- | --- | --- | --- | ---: | ---: | ---: |",
        f"| {rec['cascade']} | {rec['slide']} | {rec['region']} | {rec['mpp']:g} µm/px "
        f"({rec['width']} x {rec['height']} px) | {rec['tissue_fraction']:.3f} | "
        f"{rec['coverage']:.4f} | {rec['generated_fraction']:.3f} |",
    ]


def real_regions() -> list[str]:
    """The real slide's own figures per region (experiments/real_regions.py)."""
    rec = _load("real-regions")
    if not rec:
        return _missing("real-regions")
    out = [
        "| region (level-0 px) | glass | glass noise | haematoxylin / eosin OD | nuclei per "
        "mm² (n) | nucleus elongation | coherence | eosin-dominant share |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rec["regions"].items():
        c, h = r["colour"], r["histology"]
        out.append(
            f"| {name} ({r['region']}) | {c['background_fraction']:.3f} | {c['glass_std']:.2f} | "
            f"{c['haematoxylin_mean']:.3f} / {c['eosin_mean']:.3f} | "
            f"{h['nuclei_per_mm2']:.0f} ({h['nuclei']}) | {h['nucleus_elongation']:.2f} | "
            f"{h['coherence']:.3f} | {h['eosin_dominant']:.3f} |"
        )
    return out


def val_choices() -> list[str]:
    """The cascade's step counts chosen on the val region (experiments/val_choices.py)."""
    rec = _load("val-choices")
    if not rec:
        return _missing("val-choices")
    out = [
        "| stage | DDIM steps | band energy synthetic / real, finest octave first | glass "
        "noise synthetic / real | targets met | chosen |",
        "| --- | ---: | --- | ---: | ---: | --- |",
    ]
    for label, stage in rec["stages"].items():
        for r in stage["runs"]:
            bands = ", ".join(f"{b:.2f}" for b in r["stage"]["band_ratios"])
            out.append(
                f"| {label} (`{stage['checkpoint']}`) | {r['steps']} | {bands} | "
                f"{r['stage']['glass_std']:.2f} / {r['real_glass_std']:.2f} | "
                f"{r['targets_met']} of {len(r['bands_met']) + 1} | "
                f"{'yes' if r['steps'] == stage['chosen'] else ''} |"
            )
    return out


def glass_probe() -> list[str]:
    """Noise-prediction error per t on glass and tissue (experiments/glass_probe.py)."""
    rec = _load("glass-probe")
    if not rec:
        return _missing("glass-probe")
    times = [r["t"] for r in rec["models"][0]["rows"]]
    out = [
        "| model (step, loss weighting) | on | " + " | ".join(f"t = {t}" for t in times) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in times) + " |",
    ]
    for m in rec["models"]:
        name = f"`{m['checkpoint']}` ({m['step']}, {m['loss_weighting']})"
        for key, label in (
            ("mse_glass", "glass"),
            ("mse_tissue", "tissue"),
            ("loss_weight", "training weight"),
        ):
            cells = " | ".join(f"{r[key]:.3f}" for r in m["rows"])
            out.append(f"| {name} | {label} | {cells} |")
    return out


def candidate_val() -> list[str]:
    """The candidate finest stage against the bundled one on val, both at DDIM 14."""
    choices, candidate = _load("val-choices"), _load("sr4-v2-val")
    if not choices or not candidate:
        return _missing("sr4-v2-val")
    bundled = next(r for r in choices["stages"]["sr4"]["runs"] if r["steps"] == 14)
    out = [
        "| stage (iterations) | band energy synthetic / real, finest octave first | glass "
        "noise synthetic / real |",
        "| --- | --- | ---: |",
    ]
    for label, r in (("builtin:skin-sr4", bundled), ("sr4-v2", candidate)):
        bands = ", ".join(f"{b:.2f}" for b in r["stage"]["band_ratios"])
        out.append(
            f"| `{label}` ({r['step']:,}) | {bands} | "
            f"{r['stage']['glass_std']:.2f} / {r['real_glass_std']:.2f} |"
        )
    return out


BLOCKS: dict[str, Callable[[], list[str]]] = {
    "candidate-val": candidate_val,
    "glass-probe": glass_probe,
    "val-choices": val_choices,
    "real-regions": real_regions,
    "seeds-skin": lambda: seeds("skin-ddim10"),
    "seeds-skin-ddim25": lambda: seeds("skin-ddim25"),
    "seeds-tiny-pathology": lambda: seeds("tiny-pathology"),
    "mask-calibration": mask_calibration,
}
BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S
)


def refresh(text: str) -> str:
    """`text` with every generated block rendered anew from its record."""

    def render(match: re.Match) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise SystemExit(f"unknown generated block {name!r} (known: {', '.join(BLOCKS)})")
        return match[1] + "\n".join(BLOCKS[name]()) + "\n" + match[4]

    return BLOCK.sub(render, text)


def everything() -> None:
    sections = ["\n".join(equal_compute())] if _load("equal-compute") else []
    for task in ("pathology", "pathology-10x", "faces"):
        for make in (quality, ddim_steps, ood, inpaint, superres):
            lines = make(task)
            if lines:
                sections.append("\n".join(lines))
    print("\n\n".join(sections))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--write", type=Path, metavar="DOC", help="refresh DOC's generated blocks")
    mode.add_argument("--check", type=Path, metavar="DOC", help="exit 1 where a block differs")
    args = p.parse_args()
    if args.write is None and args.check is None:
        everything()
        return
    doc = args.write or args.check
    text = doc.read_text()
    fresh = refresh(text)
    if args.write is not None:
        doc.write_text(fresh)
        return
    stale = [
        m["name"]
        for m, n in zip(BLOCK.finditer(text), BLOCK.finditer(fresh), strict=True)
        if m["body"] != n["body"]
    ]
    if stale:
        print(f"{doc}: generated blocks differ from their records: {', '.join(stale)}")
        sys.exit(1)
    print(f"{doc}: {len(BLOCK.findall(text))} generated blocks match their records")


if __name__ == "__main__":
    main()
