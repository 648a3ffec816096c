"""NGFF 0.4 label images in a slide's OME-Zarr: a tissue mask beside the image it describes.

    SLIDE.ome.zarr/0/labels/.zattrs          {"labels": ["tissue", ...]}
    SLIDE.ome.zarr/0/labels/<name>/.zattrs   "image-label" (colours, classes, source "../../")
                                             + NGFF multiscales (axes c, y, x as the image's)
    SLIDE.ome.zarr/0/labels/<name>/0, 1, ... (1, h_l, w_l) uint8, 0 glass, 1 tissue

The mask may be coarser than the image (a cascade's tissue mask is at 16 µm/px, its slide
at 1 µm/px): `scale` is how many level-0 image pixels one mask pixel spans, and the label's
coordinate transformations say so in the image's units: a scale of `mpp * scale * 2**l` µm
per pixel at level l, and a translation of `mpp * (scale * 2**l - 1) / 2` µm that puts each
label pixel's centre on the centre of the image pixels it covers (the image's level-0
pixel j is at `j * mpp`). NGFF asks a label's dimensions to be the image's or 1; a coarse
label keeps the axes, with a channel axis of 1, and relies on those transformations.
Levels halve (rounding up, as the image's) until the longer side is at most 256 px; a
level's pixel is tissue if any pixel under it is (`"type": "max"`).

Writes are atomic: a label is built in a hidden folder beside its place and renamed into
it (the whole `labels` group too, when it is the first label), and only then listed in
`labels/.zattrs` (written atomically), so a reader never sees a listed label half-written
and a failed write leaves nothing. Rewriting a label replaces it (the old one is renamed
aside, the new one renamed in, the old one removed). One writer at a time per slide.

gigasynth's own readers (`open_slide`, `DeepZoomGenerator`, `open_level`) read the levels
the image's multiscales lists and never look at `labels/`; Bio-Formats' Zarr reader
ignores labels unless asked to include them.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from gigasynth.atomic import atomic_write_bytes
from gigasynth.errors import GigasynthError
from gigasynth.io.omezarr import (
    AXES,
    CHUNK_KEYS,
    COMPRESSOR,
    IMAGE,
    SLIDE_CHUNK,
    read_zarr_metadata,
)
from gigasynth.io.pyramid import pyramid_shapes

LABELS = "labels"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
CLASSES = ((0, "glass", (0, 0, 0, 0)), (1, "tissue", (46, 204, 113, 128)))  # value, class, RGBA


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise GigasynthError(
            f"label name must be 1-64 letters, digits, '_', '.' or '-' (not starting with "
            f"'.', '_' or '-'), got {name!r}"
        )
    return name


def _check_mask(mask: object) -> np.ndarray:
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.dtype != bool or not mask.size:
        shape = getattr(mask, "shape", None)
        dtype = getattr(mask, "dtype", type(mask).__name__)
        raise GigasynthError(f"label mask must be a non-empty 2-D bool array, got {shape} {dtype}")
    return mask


def _check_scale(scale: object, mask: np.ndarray, height: int, width: int) -> float:
    """`scale` as a float, checked to be positive and to make the mask cover the image."""
    if isinstance(scale, bool) or not isinstance(scale, int | float | np.integer | np.floating):
        raise GigasynthError(f"label scale must be a number of image pixels, got {scale!r}")
    value = float(scale)
    if not math.isfinite(value) or value <= 0:
        raise GigasynthError(f"label scale must be a positive finite number, got {value}")
    expected = tuple(max(1, math.ceil(n / value - 1e-9)) for n in (height, width))
    if mask.shape != expected:
        raise GigasynthError(
            f"a label mask at scale {value:g} for a {width}x{height} px image must be "
            f"{expected[1]}x{expected[0]} px, got {mask.shape[1]}x{mask.shape[0]}"
        )
    return value


def halve_any(level: np.ndarray) -> np.ndarray:
    """(1, H, W) 0/1 -> (1, ceil(H/2), ceil(W/2)): 1 where any pixel of the 2x2 window is 1."""
    _, height, width = level.shape
    padded = np.pad(level, ((0, 0), (0, height % 2), (0, width % 2)), mode="edge")
    return np.maximum.reduce(
        [padded[:, 0::2, 0::2], padded[:, 1::2, 0::2], padded[:, 0::2, 1::2], padded[:, 1::2, 1::2]]
    )


def _label_attrs(name: str, mpp: float, scale: float, levels: int) -> dict[str, Any]:
    """The label group's image-label and multiscales metadata (module docstring)."""
    datasets = []
    for level in range(levels):
        span = scale * 2**level  # image level-0 pixels per label pixel
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0, mpp * span, mpp * span]},
                    {"type": "translation", "translation": [0.0, *[mpp * (span - 1) / 2] * 2]},
                ],
            }
        )
    return {
        "image-label": {
            "version": "0.4",
            "colors": [{"label-value": v, "rgba": list(rgba)} for v, _, rgba in CLASSES],
            "properties": [{"label-value": v, "class": c} for v, c, _ in CLASSES],
            "source": {"image": "../../"},
        },
        "multiscales": [
            {
                "version": "0.4",
                "name": name,
                "axes": [dict(axis) for axis in AXES],
                "datasets": datasets,
                "type": "max",
                "metadata": {
                    "description": "level 0 is the mask; each further level is 1 where any "
                    "pixel of the 2x2 window above it is 1"
                },
            }
        ],
    }


def _build(folder: Path, name: str, mask: np.ndarray, mpp: float, scale: float) -> None:
    """Write the complete label group `name` at `folder` (which must not exist)."""
    shapes = pyramid_shapes(*mask.shape)
    group = zarr.open_group(
        str(folder),
        mode="w-",
        zarr_format=2,
        attributes=_label_attrs(name, mpp, scale, len(shapes)),
    )
    level = mask[None].astype(np.uint8)
    for index, shape in enumerate(shapes):
        if index:
            level = halve_any(level)
        chunk = min(SLIDE_CHUNK, max(shape))
        array = group.create_array(
            str(index),
            shape=(1, *shape),
            chunks=(1, chunk, chunk),
            dtype="uint8",
            compressors=COMPRESSOR,
            fill_value=0,
            chunk_key_encoding=CHUNK_KEYS,
        )
        array[:] = level


def _listed(labels_dir: Path) -> list[str]:
    """The names `labels/.zattrs` lists ([] if it lists none or cannot be read)."""
    try:
        names = json.loads((labels_dir / ".zattrs").read_text(encoding="utf-8"))["labels"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [str(n) for n in names] if isinstance(names, list) else []


def write_label(path: Path, name: str, mask: np.ndarray, scale: float) -> Path:
    """Write `mask` (2-D bool, True = tissue) as the NGFF label image `0/labels/<name>` of
    the OME-Zarr at `path`, one mask pixel spanning `scale` x `scale` level-0 image pixels;
    returns the label's folder. Replaces a label of the same name (module docstring)."""
    path = Path(path)
    name = _check_name(name)
    mask = _check_mask(mask)
    meta = read_zarr_metadata(path)  # one-line error unless a gigasynth OME-Zarr
    value = _check_scale(scale, mask, meta.height, meta.width)
    labels_dir = path / IMAGE / LABELS
    target = labels_dir / name
    token = uuid.uuid4().hex[:12]
    if not labels_dir.is_dir():
        tmp = path / IMAGE / f".{LABELS}.{token}.tmp"
        try:
            zarr.open_group(str(tmp), mode="w-", zarr_format=2, attributes={"labels": [name]})
            _build(tmp / name, name, mask, meta.mpp, value)
            os.rename(tmp, labels_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target
    tmp = labels_dir / f".{name}.{token}.tmp"
    try:
        _build(tmp, name, mask, meta.mpp, value)
        if target.exists():
            old = labels_dir / f".{name}.{token}.old"
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    listed = _listed(labels_dir)
    if name not in listed:
        attrs = {"labels": [*listed, name]}
        atomic_write_bytes(labels_dir / ".zattrs", json.dumps(attrs, indent=4).encode())
    return target


def read_label(path: Path, name: str) -> tuple[np.ndarray, float]:
    """The label image `name` of the OME-Zarr at `path`: its level-0 mask (2-D bool, True
    where the label is non-zero) and its scale in level-0 image pixels per mask pixel
    (from its NGFF scale over the image's µm per pixel; a whole number comes back exact)."""
    path = Path(path)
    name = _check_name(name)
    meta = read_zarr_metadata(path)
    labels_dir = path / IMAGE / LABELS
    listed = _listed(labels_dir)
    if name not in listed:
        have = ", ".join(listed) if listed else "none"
        raise GigasynthError(f"no label {name!r} in {path} (labels: {have})")
    try:
        group = zarr.open_group(str(labels_dir / name), mode="r", zarr_format=2)
        attrs: dict[str, Any] = group.attrs.asdict()
        dataset = attrs["multiscales"][0]["datasets"][0]
        um = float(dataset["coordinateTransformations"][0]["scale"][-1])
        array = zarr.open_array(
            str(labels_dir / name / str(dataset["path"])), mode="r", zarr_format=2
        )
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise GigasynthError(
            f"label {name!r} of {path} is listed but not a readable NGFF label "
            f"({type(exc).__name__})"
        ) from None
    if not math.isfinite(um) or um <= 0 or array.ndim != 3 or array.shape[0] != 1:
        raise GigasynthError(
            f"label {name!r} of {path}: expected a (1, h, w) array at a positive "
            f"scale, got {array.shape} at {um} µm/px"
        )
    ratio = um / meta.mpp
    scale = float(round(ratio)) if abs(ratio - round(ratio)) < 1e-9 * ratio else ratio
    return np.asarray(array[0]) != 0, scale
