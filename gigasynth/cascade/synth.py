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

Any size: a generated layout covers the size asked for rounded up to the cascade's
factor (`masks.mask_size`), the stages draw that, and a size that is not a multiple is the
top-left crop of it: the last stage then writes `stage-n.ome.zarr` in the work folder
too, and the output (pyramid, OME-TIFF, preview, tissue label) is made from its crop.
The crop of a tiled run equals the crop of the whole-image run, as the stages do (I1).
"""

from __future__ import annotations

import hashlib
import json
import os
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
from gigasynth.cascade.masks import generate_tissue_mask, mask_size
from gigasynth.checkpoint import load_checkpoint
from gigasynth.errors import FieldError, GigasynthError
from gigasynth.images import write_png
from gigasynth.io import (
    build_pyramid,
    create_ome_zarr,
    open_level,
    read_metadata,
    write_ome_tiff,
    write_preview,
)
from gigasynth.io.labels import write_label
from gigasynth.synth import JobError, SynthProgress, SynthResult, SynthSpec, synthesize
from gigasynth.synth.engine import check_targets
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
        raise FieldError(
            f"cascade {cascade.path} needs a [layout] (an image or a slide): it "
            "generates none of its own"
        )
    if size is None:
        raise FieldError(
            "a generated layout needs the slide's [size] (width x height at the "
            f"output's {cascade.mpp:.4g} µm/px)"
        )
    if kind not in ("auto", "mask"):
        raise GigasynthError(f"a generated layout is a tissue mask, not {kind!r}")
    mpp = cascade.entry_mpp("mask")
    width, height = mask_size(size, cascade.factor)
    pixels = generate_tissue_mask(seed, width, height, mpp, cascade.mask_coverage)
    return Layout("mask", pixels, mpp)


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
        raise FieldError(
            f"an unfinished cascade run left its stages in {work}",
            "pass [resume] to continue it or [overwrite] to discard it",
        )
    if resume and saved is not None:
        if saved != identity:
            diff = next(
                (key for key in identity if saved.get(key) != identity[key]), "unknown fields"
            )
            raise FieldError(
                f"the saved cascade run in {work} is for another job ({diff} differs)",
                "rerun with the same parameters, or with [overwrite] and without "
                "[resume] to start over",
            )
        return True
    for out in stage_outs:  # an engine state kept in a --work-dir elsewhere
        discard_work(out)
    shutil.rmtree(work, ignore_errors=True)
    return False


def _level0_png(zarr: Path, png: Path) -> None:
    level = np.asarray(open_level(zarr, 0, mode="r")[:])
    write_png(png, np.ascontiguousarray(level.transpose(1, 2, 0)))


def _write_crop(
    drawn: Path,
    out: Path,
    size: tuple[int, int],
    start: Layout,
    scale: int,
    targets: tuple[Path | None, Path | None, str],
    client: Client | None,
) -> None:
    """The output as the top-left `size` (width, height) of the last stage's slide
    `drawn`: level 0 copied band by band, its pyramid, tissue label, OME-TIFF and preview
    (`targets`: tiff, preview, compression), built beside `drawn` and renamed to `out`."""
    width, height = size
    slide = drawn.with_name("cropped.ome.zarr")
    shutil.rmtree(slide, ignore_errors=True)
    meta = read_metadata(drawn)
    level0 = create_ome_zarr(slide, replace(meta, width=width, height=height))
    source = open_level(drawn, 0)
    band = level0.chunks[1]
    for y in range(0, height, band):
        level0[:, y : y + band, :] = source[:, y : min(y + band, height), :width]
    build_pyramid(slide, client=client)
    rows, cols = -(-height // scale), -(-width // scale)  # the mask pixels the crop touches
    write_label(slide, TISSUE_LABEL, start.tissue[:rows, :cols], scale)
    ome_tiff, preview, compression = targets
    if ome_tiff is not None:
        write_ome_tiff(slide, ome_tiff, compression)
    if preview is not None:
        write_preview(slide, preview)
    if out.exists():  # --overwrite: the old slide goes only once the new one is complete
        os.replace(out, drawn.with_name("replaced.ome.zarr"))
    os.replace(slide, out)


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
    slide `size` (width, height) px, any size (the layout covers it rounded up to the
    cascade's factor; the slide is its crop, see the module's docstring). The output
    holds the layout's tissue mask as its label image "tissue" (gigasynth.io.labels).
    Every stage is checked before any work (one-line errors; JobErrors name the spec's
    fields); a cancel (SynthCancelled) or crash leaves the run resumable with
    resume=True. The result is the last stage's, with the seconds of the whole run (this
    call) and the output's paths. `block_steps` is every stage's (`synthesize`'s; None:
    each stage's default).
    """
    started = time.perf_counter()
    out = Path(out).absolute()
    ome_tiff = None if ome_tiff is None else Path(ome_tiff)
    preview = None if preview is None else Path(preview)
    check_targets(out, ome_tiff, preview, overwrite)  # all of them, before stage 1 runs
    start = make_layout(cascade, layout, settings.seed, size, layout_kind)
    stages = cascade.stages[cascade.entry(start.kind) :]
    check_entry(stages[0], start)
    work = cascade_work(out)
    specs = stage_specs(stages, start.size, settings, work)
    check_stages(stages, specs, block_steps)
    identity = _identity(cascade, stages, start, settings)
    n = len(specs)
    drawn = (specs[-1].width, specs[-1].height)
    crop = None if size is None or tuple(size) == drawn else (size[0], size[1])
    if crop is not None:  # records of runs at multiples stay as they were
        identity["crop"] = list(crop)
    last_out = out if crop is None else _stage_out(work, n)  # a crop is made from stage n's
    outs = [_stage_out(work, k) for k in range(1, n)] + [last_out]
    resumed = _open(work, identity, resume, overwrite, [o for o in outs if o != out])
    if not resumed:
        work.mkdir(parents=True)
        write_png(work / LAYOUT, start.condition_rgb())
        atomic_write_bytes(work / RECORD, json.dumps(identity, indent=2).encode())
    result: SynthResult | None = None
    for k, (stage, spec, stage_out) in enumerate(zip(stages, specs, outs, strict=True), start=1):
        last = k == n
        if not last and _stage_png(work, k).is_file():
            continue
        if (
            stage_out != out
            and stage_out.is_dir()
            and not (work / f"{stage_out.name}.work").exists()
        ):
            if not last:
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
            ome_tiff=ome_tiff if stage_out == out else None,
            preview=preview if stage_out == out else None,
            client=client,
            workers=workers,
            resume=resume,
            overwrite=overwrite or stage_out != out,
            progress=report,
            should_stop=should_stop,
            work_dir=work_dir,
            preflight=preflight,
            block_steps=block_steps,
        )
        if not last:
            _level0_png(stage_out, _stage_png(work, k))
    scale = cascade.entry_factor(start.kind)
    if crop is None:
        write_label(out, TISSUE_LABEL, start.tissue, scale)
    else:
        targets = (ome_tiff, preview, settings.tiff_compression)
        _write_crop(last_out, out, crop, start, scale, targets, client)
    shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - started
    if result is None:  # a resumed run whose stages were all done: only the crop was left
        return SynthResult(out, ome_tiff, preview, stages[-1].sha256, seconds, 0.0)
    return replace(
        result, zarr_path=out, ome_tiff_path=ome_tiff, preview_path=preview, seconds=seconds
    )
