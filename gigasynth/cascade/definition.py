"""A cascade definition: `cascade.json`, an ordered list of stages from coarse to fine.

    {"layout": "generated",
     "stages": [{"checkpoint": "layout/checkpoint", "sampler": "ddim", "steps": 25},
                {"checkpoint": "sr4/checkpoint", "sampler": "ddim", "steps": 20}]}

Each stage is a conditioned Diff-NCA checkpoint (a reference as `--checkpoint` takes it;
a relative path is relative to the cascade file's folder) with its sampler settings.
Its µm per pixel is the checkpoint's metadata (`mpp`); a stage may state `"mpp"` itself,
which must then agree with the metadata within 1 %, or stands in where the metadata
records none.

Stage 1 may be a mask stage (`condition_kind` "mask": it draws tissue from a tissue
mask); every later stage is an image stage (a super-resolution stage conditioned on the
stage before). A layout enters where its kind fits: a mask at stage 1 (a mask stage), an
RGB image at the first image stage, replacing the stages before it. The layout source
says where the layout comes from when the user gives none: "given" (the user must give
`--layout IMAGE|SLIDE`) or "generated" (a procedural tissue mask,
gigasynth.cascade.masks, for a cascade that starts with a mask stage); a generated
layout's `"mask_coverage"` (default 1) is the masks' calibration to the training slides'
tissue (`gigasynth.cascade.masks.calibrate_masks`).

Checked on load (one-line GigasynthError naming the cascade and the stage): the JSON's
shape, every checkpoint exists and is a conditioned stage, only stage 1 is a mask stage,
and resolutions chain: stage k's condition_downsample equals stage k-1's mpp over its
own, within 1 %.

This module reads checkpoints' descriptions (gigasynth.checkpoint) and nothing above it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard

from gigasynth.cascade.masks import check_coverage
from gigasynth.checkpoint import BUILTIN, builtin_cascade_file, describe_checkpoint
from gigasynth.errors import FieldError, GigasynthError
from gigasynth.sampling import SampleRequest

CASCADE_FILE = "cascade.json"
LAYOUT_SOURCES = ("given", "generated")
LayoutKind = Literal["mask", "image"]
SAMPLERS = ("ddim", "ddpm")
MPP_TOLERANCE = 0.01  # resolutions within 1 % are the same
_CASCADE_KEYS = {"stages", "layout", "name", "mask_coverage"}
_STAGE_KEYS = {"checkpoint", "sampler", "steps", "mpp"}


@dataclass(frozen=True)
class Stage:
    """One stage: its checkpoint, resolution, sampler settings and what it conditions on."""

    checkpoint: str  # as `synthesize` takes it (relative paths resolved)
    sha256: str
    mpp: float
    sampler: str
    steps: int | None  # DDIM steps; None for ddpm (all T)
    condition_downsample: int
    condition_channels: int
    condition_kind: str = "image"  # "mask": a layout stage drawing from a tissue mask

    def describe(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "sha256": self.sha256,
            "mpp": self.mpp,
            "sampler": self.sampler,
            "steps": self.steps,
            "condition_downsample": self.condition_downsample,
            "condition_channels": self.condition_channels,
            "condition_kind": self.condition_kind,
        }


@dataclass(frozen=True)
class Cascade:
    """A checked cascade: stages coarse to fine and the layout source."""

    path: Path
    stages: tuple[Stage, ...]
    layout: str
    mask_coverage: float = 1.0  # a generated layout's piece-size factor (masks' calibration)

    @property
    def layout_mpp(self) -> float:
        """µm per pixel the layout is read at: the first stage's condition resolution."""
        first = self.stages[0]
        return first.mpp * first.condition_downsample

    @property
    def factor(self) -> int:
        """Final pixels per layout pixel along each axis (the product of the factors)."""
        return math.prod(s.condition_downsample for s in self.stages)

    @property
    def mpp(self) -> float:
        """The finest stage's µm per pixel: the output's."""
        return self.stages[-1].mpp

    @property
    def starts_from_mask(self) -> bool:
        """Whether stage 1 is a mask stage (draws tissue from a tissue mask)."""
        return self.stages[0].condition_kind == "mask"

    def entry(self, kind: LayoutKind) -> int:
        """The index of the stage a layout of `kind` enters (the stages before it are
        skipped); one-line GigasynthError where the cascade has no such stage."""
        if kind == "mask":
            if not self.starts_from_mask:
                raise GigasynthError(
                    f"cascade {self.path} has no mask stage: give an RGB layout at "
                    f"{self.layout_mpp:g} µm/px, not a tissue mask"
                )
            return 0
        first = 1 if self.starts_from_mask else 0
        if first >= len(self.stages):
            raise GigasynthError(
                f"cascade {self.path} draws from a tissue mask only: give a mask "
                "(a grey image, light = tissue), not an RGB image"
            )
        return first

    def entry_mpp(self, kind: LayoutKind) -> float:
        """µm per pixel a layout of `kind` is read at: its entry stage's condition's."""
        stage = self.stages[self.entry(kind)]
        return stage.mpp * stage.condition_downsample

    def entry_factor(self, kind: LayoutKind) -> int:
        """Final pixels per layout pixel for a layout of `kind`."""
        return math.prod(s.condition_downsample for s in self.stages[self.entry(kind) :])

    def identity(self) -> dict[str, Any]:
        """What a saved cascade run must match: each stage's weights and sampler."""
        return {
            "layout": self.layout,
            "mask_coverage": self.mask_coverage,
            "stages": [
                {
                    "sha256": s.sha256,
                    "sampler": s.sampler,
                    "steps": s.steps,
                    "mpp": s.mpp,
                    "condition_downsample": s.condition_downsample,
                }
                for s in self.stages
            ],
        }

    def describe(self) -> dict[str, Any]:
        return {
            "cascade": str(self.path),
            "layout": self.layout,
            "mask_coverage": self.mask_coverage,
            "layout_mpp": self.layout_mpp,
            "factor": self.factor,
            "mpp": self.mpp,
            "stages": [s.describe() for s in self.stages],
        }


def cascade_file(ref: str | Path) -> Path | None:
    """The cascade file `ref` names (a .json file, or a folder holding cascade.json);
    None when `ref` is not a cascade (a checkpoint reference, or nothing)."""
    text = str(ref)
    if text.startswith(BUILTIN):
        return builtin_cascade_file(text)
    path = Path(text)
    if path.is_dir():
        inner = path / CASCADE_FILE
        return inner if inner.is_file() else None
    if path.suffix.lower() == ".json" and not path.with_suffix(".safetensors").exists():
        return path
    return None


def is_cascade(ref: str | Path) -> bool:
    """Whether `ref` names a cascade definition rather than a checkpoint."""
    return cascade_file(ref) is not None


def _stage_ref(ref: str, base: Path) -> str:
    if ref.startswith(BUILTIN) or Path(ref).is_absolute():
        return ref
    return str((base / ref).absolute())


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _load_stage(raw: Any, k: int, base: Path, where: str) -> Stage:
    at = f"{where} stage {k}"
    if not isinstance(raw, dict):
        raise GigasynthError(f'{at} must be an object with a "checkpoint"')
    unknown = sorted(set(raw) - _STAGE_KEYS)
    if unknown:
        raise GigasynthError(
            f"{at}: unknown field {unknown[0]!r} (known: {', '.join(sorted(_STAGE_KEYS))})"
        )
    ref = raw.get("checkpoint")
    if not isinstance(ref, str) or not ref:
        raise GigasynthError(f'{at} names no "checkpoint"')
    sampler = raw.get("sampler", "ddim")
    if sampler not in SAMPLERS:
        raise GigasynthError(f"{at}: unknown sampler {sampler!r} (ddim or ddpm)")
    steps = raw.get("steps", 50 if sampler == "ddim" else None)
    if sampler == "ddpm":
        steps = None
    elif isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise GigasynthError(f"{at}: steps must be a positive integer, not {steps!r}")
    given = raw.get("mpp")
    if given is not None and not (_is_number(given) and given > 0):
        raise GigasynthError(f"{at}: mpp must be a positive number, not {given!r}")
    resolved = _stage_ref(ref, base)
    try:
        info = describe_checkpoint(resolved)
    except GigasynthError as exc:
        raise GigasynthError(f"{at}: {exc}") from None
    config = info.config
    if not config.is_conditioned:
        raise FieldError(
            f"{at}: {ref} is not a conditioned stage (trained without "
            "[condition_downsample]); every stage conditions on the one "
            "before it, the first on the layout"
        )
    steps_problem = SampleRequest(sampler, steps).steps_problem(config.timesteps)
    if steps_problem is not None:
        raise FieldError(f"{at}: {steps_problem}")
    meta_mpp = info.meta.get("mpp")
    meta_mpp = float(meta_mpp) if _is_number(meta_mpp) and meta_mpp > 0 else None
    if meta_mpp is not None:
        if given is not None and abs(given - meta_mpp) > MPP_TOLERANCE * meta_mpp:
            raise GigasynthError(
                f"{at}: mpp {given:g} is not {ref}'s resolution "
                f"({meta_mpp:g} µm/px in its metadata)"
            )
        mpp = meta_mpp
    elif given is not None:
        mpp = float(given)
    else:
        raise GigasynthError(
            f"{at}: {ref} records no µm per pixel (checkpoint metadata "
            '"mpp"); state the stage\'s "mpp" in the cascade'
        )
    return Stage(
        resolved,
        info.sha256,
        mpp,
        sampler,
        steps,
        config.condition_downsample,
        config.condition_channels,
        config.condition_kind,
    )


def load_cascade(ref: str | Path) -> Cascade:
    """The checked cascade `ref` names (a cascade.json file or its folder)."""
    path = cascade_file(ref)
    if path is None:
        raise GigasynthError(
            f"{ref} is not a cascade (a .json file, or a folder holding {CASCADE_FILE})"
        )
    where = f"cascade {path}:"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise GigasynthError(f"cascade not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GigasynthError(f"{where} unreadable JSON ({reason})") from None
    if not isinstance(doc, dict):
        raise GigasynthError(f'{where} must be a JSON object with "stages"')
    if "model" in doc and "stages" not in doc:
        raise GigasynthError(
            f"{path} is a checkpoint's config, not a cascade: give the checkpoint's folder"
        )
    unknown = sorted(set(doc) - _CASCADE_KEYS)
    if unknown:
        raise GigasynthError(
            f"{where} unknown field {unknown[0]!r} (known: {', '.join(sorted(_CASCADE_KEYS))})"
        )
    layout = doc.get("layout", "given")
    if layout not in LAYOUT_SOURCES:
        raise FieldError(
            f'{where} unknown layout source {layout!r} ("given": the layout comes '
            'from the caller\'s [layout]; "generated": a procedural tissue mask)'
        )
    raw = doc.get("stages")
    if not isinstance(raw, list) or not raw:
        raise GigasynthError(f'{where} "stages" must be a non-empty list, coarse to fine')
    stages = tuple(_load_stage(s, k, path.parent, where) for k, s in enumerate(raw, start=1))
    for k, stage in enumerate(stages[1:], start=2):
        if stage.condition_kind == "mask":
            raise GigasynthError(
                f"{where} stage {k} is a mask stage; only stage 1 may draw from a "
                "tissue mask, the others refine the stage before"
            )
    if layout == "generated" and stages[0].condition_kind != "mask":
        raise FieldError(
            f'{where} a "generated" layout is a tissue mask: stage 1 must be a mask '
            "stage (trained with [condition_kind] mask)"
        )
    for k in range(1, len(stages)):
        before, stage = stages[k - 1], stages[k]
        ratio = before.mpp / stage.mpp
        if abs(stage.condition_downsample - ratio) > MPP_TOLERANCE * ratio:
            raise GigasynthError(
                f"{where} stages {k} and {k + 1} do not chain: stage {k} makes "
                f"{before.mpp:g} µm/px and stage {k + 1} ({stage.mpp:g} µm/px) is a "
                f"{stage.condition_downsample}x stage, so it needs its input at "
                f"{stage.mpp * stage.condition_downsample:g} µm/px"
            )
    coverage = doc.get("mask_coverage", 1.0)
    if "mask_coverage" in doc and layout != "generated":
        raise GigasynthError(f'{where} "mask_coverage" applies to a "generated" layout only')
    try:
        check_coverage(coverage)
    except GigasynthError as exc:
        raise GigasynthError(f"{where} {exc}") from None
    return Cascade(path.absolute(), stages, layout, float(coverage))
