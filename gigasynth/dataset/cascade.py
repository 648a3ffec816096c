"""Cascade datasets: each patch a cascade run (gigasynth.cascade.patches.sample_cascade) on
its own layout, a pure function of (cascade, settings, index).

Patch i starts from a generated tissue mask seeded by the patch's seed mix(seed, i) (for
a "generated" cascade), at the size asked for (any size: the mask covers it rounded up to
the cascade's factor and the patch is the crop), or from layout file i mod n of a folder of
layout images (masks or RGB, sorted by name), its size the layout's times the factors of
the stages it enters. The patch's diffusion uses the same seed. Its tissue mask (the
layout's, at the patch's size) is written beside it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gigasynth.cascade import Cascade, load_cascade
from gigasynth.cascade.layout import Layout, load_layout
from gigasynth.cascade.patches import sample_cascade
from gigasynth.cascade.synth import check_entry, make_layout
from gigasynth.dataset.patches import Patch
from gigasynth.dataset.spec import MAX_PATCH_PIXELS, MIN_PATCH_SIDE, DatasetSpec, tissue_fraction
from gigasynth.errors import FieldError, GigasynthError

LAYOUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def stages_identity(cascade: Cascade) -> list[dict[str, Any]]:
    """What of the cascade decides a patch's bytes: each stage's weights and sampler."""
    return cascade.identity()["stages"]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def layout_files(folder: Path) -> list[Path]:
    """The layout images of a folder (PNG, JPEG, TIFF; hidden files left out), by name."""
    if not folder.is_dir():
        raise FieldError(f"[layouts] {folder} is not a folder of layout images")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in LAYOUT_SUFFIXES
    )
    if not files:
        raise FieldError(
            f"[layouts] {folder} holds no layout images ({', '.join(LAYOUT_SUFFIXES)})"
        )
    return files


def _described_layout(cascade: Cascade, path: Path) -> dict[str, Any]:
    layout = load_layout(path, cascade)
    stages = cascade.stages[cascade.entry(layout.kind) :]
    check_entry(stages[0], layout)
    f = cascade.entry_factor(layout.kind)
    width, height = layout.size[0] * f, layout.size[1] * f
    if min(width, height) < MIN_PATCH_SIDE or width * height > MAX_PATCH_PIXELS:
        raise GigasynthError(
            f"layout {path.name} gives a {width}x{height} patch ({f}x its "
            f"{layout.size[0]}x{layout.size[1]} px), outside {MIN_PATCH_SIDE} px per side "
            f"to {MAX_PATCH_PIXELS:,} pixels (GIGASYNTH_MAX_PATCH_PIXELS)"
        )
    return {
        "file": path.name,
        "sha256": _sha256(path.read_bytes()),
        "kind": layout.kind,
        "width": width,
        "height": height,
        "tissue_fraction": tissue_fraction(layout.tissue),
    }


def plan_cascade(
    cascade: Cascade, size: tuple[int, int] | None, layouts: Path | None
) -> tuple[dict[str, Any], int, int]:
    """A cascade dataset's `cascade` settings and its (largest) patch width and height.

    Without `layouts` the cascade must generate its layouts, and `size` is each patch's.
    With `layouts`, each patch's size is its layout's; a `size` given must be every
    layout's. One-line GigasynthErrors naming what is wrong.
    """
    settings: dict[str, Any] = {"stages": stages_identity(cascade), "layouts": None}
    if layouts is None:
        if cascade.layout != "generated":
            raise FieldError(
                f"cascade {cascade.path} generates no layouts (its layout source is "
                f"{cascade.layout!r})",
                "give [layouts], a folder of layout images",
            )
        if size is None:
            raise FieldError("a cascade dataset needs a [size] or [layouts], a folder")
        settings.update(
            factor=cascade.factor,
            mask_mpp=cascade.entry_mpp("mask"),
            mask_coverage=cascade.mask_coverage,
        )
        return settings, size[0], size[1]
    described = [_described_layout(cascade, p) for p in layout_files(layouts)]
    if size is not None:
        for d in described:
            if (d["width"], d["height"]) != size:
                raise FieldError(
                    f"layout {d['file']} gives a {d['width']}x{d['height']} patch, not "
                    f"[size] {size[0]}x{size[1]}: every patch's size is its layout's",
                    "leave [size] out, or give layouts of that size",
                )
    settings["layouts"] = described
    largest = max(described, key=lambda d: (d["width"] * d["height"], d["width"]))
    return settings, largest["width"], largest["height"]


def cascade_sha256(settings: dict[str, Any]) -> str:
    """The dataset's name for its cascade: the sha256 of its stages' identity."""
    return _sha256(json.dumps(settings["stages"], sort_keys=True).encode())


def open_cascade(ref: str, spec: DatasetSpec) -> Cascade:
    """The cascade `ref` names, checked to be the one the dataset was made with."""
    cascade = load_cascade(ref)
    assert spec.cascade is not None
    if stages_identity(cascade) != spec.cascade["stages"]:
        raise GigasynthError(
            f"cascade {ref} is not the one this dataset was made with (its stages' "
            "weights or samplers changed)"
        )
    return cascade


def patch_layout(cascade: Cascade, spec: DatasetSpec, layouts: Path | None, index: int) -> Layout:
    """The layout patch `index` starts from: its generated mask, or its layout file
    (checked to hold the bytes the dataset was made with)."""
    described = spec.layout_of(index)
    if described is None:
        return make_layout(cascade, None, spec.patch_seed(index), spec.patch_size(index))
    if layouts is None:
        raise GigasynthError("this dataset's patches start from layout files: give their folder")
    path = layouts / described["file"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GigasynthError(f"cannot read layout {path}: {exc.strerror or exc}") from None
    if _sha256(data) != described["sha256"]:
        raise GigasynthError(
            f"layout {path} changed since the dataset was made (its sha256 differs)"
        )
    return load_layout(path, cascade)


def generate_cascade_patches(
    cascade: Cascade, spec: DatasetSpec, layouts: Path | None, indices: Iterable[int]
) -> Iterator[Patch]:
    """Cascade patches for `indices` in the given order, each with its tissue mask."""
    for index in indices:
        if not 0 <= index < spec.count:
            raise GigasynthError(f"patch index {index} is outside 0..{spec.count - 1}")
        layout = patch_layout(cascade, spec, layouts, index)
        image = sample_cascade(
            cascade, layout, spec.patch_seed(index), eta=spec.eta, device=spec.device
        )
        f = cascade.entry_factor(layout.kind)
        tissue = np.repeat(np.repeat(layout.tissue, f, axis=0), f, axis=1)
        width, height = spec.patch_size(index)  # a generated layout may cover more: crop
        yield Patch(index, image[:height, :width], spec.record(index), tissue[:height, :width])
