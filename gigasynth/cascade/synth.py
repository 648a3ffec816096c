"""A cascade's slide: its stages coarse to fine, each a tiled `synthesize` call.

Stage 1 is conditioned on the layout (read at the resolution its condition needs), each
later stage on the one before. The run keeps its intermediate outputs in its own work
folder, `SLIDE.ome.zarr.cascade/` beside the output:

    record.json          the cascade run's identity (stages' weights and samplers, the
                         layout's pixels, seed, tiling); a resume must match it
    layout.png           stage 1's condition
    stage-K.ome.zarr     stage K's slide (K < n), with its own engine work folder while
                         it runs
    stage-K.png          stage K's level 0: stage K+1's condition; written (atomically)
                         once stage K is done

A run stopped inside stage K resumes with resume=True: finished stages are not redone,
stage K resumes from its last saved diffusion step (the engine's resume). The last stage
writes the output itself (at the finest stage's µm per pixel); the folder goes when it
is done.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client

from gigasynth.atomic import atomic_write_bytes
from gigasynth.cascade.definition import Cascade, Stage
from gigasynth.cascade.layout import Layout, load_layout
from gigasynth.cascade.masks import generate_tissue_mask
from gigasynth.checkpoint import load_checkpoint
from gigasynth.errors import GigasynthError
from gigasynth.images import write_png
from gigasynth.io import open_level
from gigasynth.io.labels import write_label
from gigasynth.synth import JobError, SynthProgress, SynthResult, SynthSpec, synthesize
from gigasynth.synth.job import check_block_steps, check_job
from gigasynth.synth.state import discard_work

RECORD = "record.json"
TISSUE_LABEL = "tissue"  # the layout's tissue mask, as the output's NGFF label image
LAYOUT = "layout.png"


@dataclass(frozen=True)
class CascadeProgress:
    """Where a cascade run stands: stage (1-based) of stages, and that stage's report."""

    stage: int
    stages: int
    checkpoint: str
    mpp: float
    width: int
    height: int
    progress: SynthProgress


@dataclass(frozen=True)
class CascadeSettings:
    """What every stage shares: the seed and the engine's tiling and storage."""

    seed: int = 0
    eta: float = 0.0
    tile: int = 512
    halo_every: int | None = None
    save_every: int = 1
    tiff_compression: str = "jpeg"


def cascade_work(out: Path) -> Path:
    """The cascade run's work folder: SLIDE.ome.zarr -> SLIDE.ome.zarr.cascade."""
    return out.with_name(out.name + ".cascade")


def _stage_out(work: Path, k: int) -> Path:
    return work / f"stage-{k}.ome.zarr"


def _stage_png(work: Path, k: int) -> Path:
    return work / f"stage-{k}.png"


def stage_specs(
    stages: Sequence[Stage],
    layout_size: tuple[int, int],
    settings: CascadeSettings,
    work: Path,
) -> list[SynthSpec]:
    """The SynthSpec of each stage that runs: its size (the layout's times the factors so
    far) and its condition file in the work folder (the layout, or the stage before's
    level 0)."""
    specs = []
    width, height = layout_size
    for k, stage in enumerate(stages, start=1):
        width, height = width * stage.condition_downsample, height * stage.condition_downsample
        condition = work / LAYOUT if k == 1 else _stage_png(work, k - 1)
        specs.append(
            SynthSpec(
                stage.checkpoint,
                width,
                height,
                settings.seed,
                stage.sampler,
                stage.steps,
                settings.eta,
                settings.tile,
                settings.halo_every,
                settings.save_every,
                None,
                settings.tiff_compression,
                str(condition),
            )
        )
    return specs


def check_stages(
    stages: Sequence[Stage], specs: list[SynthSpec], block_steps: int | None = None
) -> None:
    """Every stage's job checked before any work (check_job, the one owner), with the
    condition left out: it is the stage before's output, not there yet, and a
    `block_steps` given (check_block_steps). One-line JobErrors that name the stage."""
    for k, (stage, spec) in enumerate(zip(stages, specs, strict=True), start=1):
        ckpt = load_checkpoint(stage.checkpoint)
        if ckpt.sha256 != stage.sha256:
            raise GigasynthError(
                f"stage {k}: checkpoint {stage.checkpoint} changed while the cascade was loaded"
            )
        plain = replace(
            ckpt.config,
            condition_channels=0,
            condition_downsample=1,
            condition_noise=0.0,
            condition_kind="image",
        )
        try:
            job = check_job(
                replace(spec, condition=None),
                replace(ckpt, config=plain),
                model=f"stage {k} ({stage.checkpoint})",
            )
            if block_steps is not None:
                check_block_steps(job, block_steps)
        except JobError as exc:
            raise JobError(f"stage {k} of {len(specs)}: {exc.template}") from None


def check_entry(stage: Stage, layout: Layout) -> None:
    """That the layout fits the stage it enters (an RGB layout needs an RGB condition)."""
    k = stage.condition_channels
    if layout.kind == "image" and k != 3:
        raise GigasynthError(
            f"the cascade's entry stage takes a {k}-channel condition; an RGB layout gives 3"
        )


def make_layout(
    cascade: Cascade,
    layout: str | Path | None,
    seed: int,
    size: tuple[int, int] | None,
    kind: str = "auto",
) -> Layout:
    """The layout a run starts from: the user's (`layout`, read as `kind`), or a generated
    tissue mask for a slide of `size` (width, height) px at the output's resolution."""
    if layout is not None:
        if size is not None:
            raise GigasynthError(
                "a slide's size comes from its layout (the layout's size times the "
                "cascade's factors): give a layout or a size, not both"
            )
        return load_layout(layout, cascade, kind)
    if cascade.layout != "generated":
        raise GigasynthError(
            f"cascade {cascade.path} needs a layout (--layout IMAGE|SLIDE): it "
            "generates none of its own"
        )
    if size is None:
        raise GigasynthError(
            "a generated layout needs the slide's size (--size WIDTHxHEIGHT at the "
            f"output's {cascade.mpp:.4g} µm/px)"
        )
    if kind not in ("auto", "mask"):
        raise GigasynthError(f"a generated layout is a tissue mask, not {kind!r}")
    f = cascade.factor
    width, height = size
    if width < 1 or height < 1 or width % f or height % f:
        raise GigasynthError(
            f"--size {width}x{height} is not a multiple of the cascade's factor {f} "
            f"(the layout's pixels are {f}x{f} output pixels), e.g. "
            f"{max(1, round(width / f)) * f}x{max(1, round(height / f)) * f}"
        )
    mpp = cascade.entry_mpp("mask")
    return Layout("mask", generate_tissue_mask(seed, width // f, height // f, mpp), mpp)


def _identity(
    cascade: Cascade, stages: Sequence[Stage], layout: Layout, settings: CascadeSettings
) -> dict:
    pixels = layout.condition_rgb()
    digest = hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()
    identity = cascade.identity()
    skipped = len(cascade.stages) - len(stages)
    return {
        **identity,
        "stages": identity["stages"][skipped:],
        "layout_kind": layout.kind,
        "layout_sha256": digest,
        "seed": settings.seed,
        "eta": settings.eta,
        "tile": settings.tile,
        "halo_every": settings.halo_every,
    }


def _open(
    work: Path, identity: dict, resume: bool, overwrite: bool, stage_outs: list[Path]
) -> bool:
    """Whether a saved cascade run is resumed; refuses what cannot be (one line)."""
    record = work / RECORD
    saved: dict[str, Any] | None = None
    if record.is_file():
        try:
            saved = json.loads(record.read_text())
        except (OSError, json.JSONDecodeError):
            saved = None
    if work.exists() and not resume and not overwrite:
        raise GigasynthError(
            f"an unfinished cascade run left its stages in {work}: pass "
            "--resume to continue it or --overwrite to discard it"
        )
    if resume and saved is not None:
        if saved != identity:
            diff = next(
                (key for key in identity if saved.get(key) != identity[key]), "unknown fields"
            )
            raise GigasynthError(
                f"the saved cascade run in {work} is for another job "
                f"({diff} differs); rerun with the same parameters, or "
                "with --overwrite and without --resume to start over"
            )
        return True
    for out in stage_outs:  # an engine state kept in a --work-dir elsewhere
        discard_work(out)
    shutil.rmtree(work, ignore_errors=True)
    return False


def _level0_png(zarr: Path, png: Path) -> None:
    level = np.asarray(open_level(zarr, 0, mode="r")[:])
    write_png(png, np.ascontiguousarray(level.transpose(1, 2, 0)))


def synthesize_cascade(
    cascade: Cascade,
    layout: str | Path | None,
    out: Path,
    settings: CascadeSettings = CascadeSettings(),  # noqa: B008 (frozen)
    *,
    size: tuple[int, int] | None = None,
    layout_kind: str = "auto",
    ome_tiff: Path | None = None,
    preview: Path | None = None,
    client: Client | None = None,
    workers: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    progress: Callable[[CascadeProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    work_dir: Path | None = None,
    preflight: bool = True,
    block_steps: int | None = None,
) -> SynthResult:
    """The slide of `cascade` from `layout` into the OME-Zarr `out`, stage by stage.

    `layout` is an image or slide (taken as `layout_kind`: auto, mask or image; it enters
    the stage its kind fits, see Cascade.entry), or None for a generated tissue mask of a
    slide `size` (width, height) px. The output holds the layout's tissue mask as its
    label image "tissue" (gigasynth.io.labels). Every stage is checked before any work
    (one-line errors; JobErrors name the spec's fields); a cancel (SynthCancelled) or
    crash leaves the run resumable with resume=True. The result is the last stage's,
    with the seconds of the whole run (this call). `block_steps` is every stage's
    (`synthesize`'s; None: each stage's default).
    """
    started = time.perf_counter()
    out = Path(out).absolute()
    if not out.name.endswith(".zarr"):
        raise GigasynthError(f"the output must be a .ome.zarr folder, not {out}")
    if out.exists() and not overwrite:
        raise GigasynthError(f"{out} exists (pass --overwrite to replace it)")
    start = make_layout(cascade, layout, settings.seed, size, layout_kind)
    stages = cascade.stages[cascade.entry(start.kind) :]
    check_entry(stages[0], start)
    work = cascade_work(out)
    specs = stage_specs(stages, start.size, settings, work)
    check_stages(stages, specs, block_steps)
    identity = _identity(cascade, stages, start, settings)
    n = len(specs)
    outs = [_stage_out(work, k) for k in range(1, n)] + [out]
    resumed = _open(work, identity, resume, overwrite, outs[:-1])
    if not resumed:
        work.mkdir(parents=True)
        write_png(work / LAYOUT, start.condition_rgb())
        atomic_write_bytes(work / RECORD, json.dumps(identity, indent=2).encode())
    result: SynthResult | None = None
    for k, (stage, spec, stage_out) in enumerate(zip(stages, specs, outs, strict=True), start=1):
        last = k == n
        if not last and _stage_png(work, k).is_file():
            continue
        if not last and stage_out.is_dir() and not (work / f"{stage_out.name}.work").exists():
            _level0_png(stage_out, _stage_png(work, k))  # done, but not yet converted
            continue

        def report(
            p: SynthProgress, k: int = k, stage: Stage = stage, spec: SynthSpec = spec
        ) -> None:
            if progress is not None:
                progress(
                    CascadeProgress(k, n, stage.checkpoint, stage.mpp, spec.width, spec.height, p)
                )

        result = synthesize(
            spec,
            stage_out,
            ome_tiff=ome_tiff if last else None,
            preview=preview if last else None,
            client=client,
            workers=workers,
            resume=resume,
            overwrite=overwrite or not last,
            progress=report,
            should_stop=should_stop,
            work_dir=work_dir,
            preflight=preflight,
            block_steps=block_steps,
        )
        if not last:
            _level0_png(stage_out, _stage_png(work, k))
    write_label(out, TISSUE_LABEL, start.tissue, cascade.entry_factor(start.kind))
    shutil.rmtree(work, ignore_errors=True)
    assert result is not None
    return replace(result, seconds=time.perf_counter() - started)
