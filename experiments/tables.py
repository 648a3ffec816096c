"""Markdown tables of docs/results/*.json, for docs/RESULTS.md (no number typed by hand).

python experiments/tables.py > docs/results/tables.md
"""

from __future__ import annotations

import json

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


def main() -> None:
    sections = ["\n".join(equal_compute())] if _load("equal-compute") else []
    for task in ("pathology", "pathology-10x", "faces"):
        for make in (quality, ddim_steps, ood, inpaint, superres):
            lines = make(task)
            if lines:
                sections.append("\n".join(lines))
    print("\n\n".join(sections))


if __name__ == "__main__":
    main()
