"""A cascade that starts from a tissue mask: a mask stage
trained from slides, layouts entering where their kind fits (a mask at the mask stage, an
RGB image at the first image stage), a generated mask when no layout is given, the
tissue label written beside the slide, and one-line errors for what cannot be run."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from distributed import Client, LocalCluster
from PIL import Image

from gigasynth.cascade import load_cascade
from gigasynth.cascade.layout import load_layout
from gigasynth.cascade.masks import generate_tissue_mask
from gigasynth.cascade.synth import CascadeSettings, cascade_work, synthesize_cascade
from gigasynth.checkpoint import read_document
from gigasynth.cli import main
from gigasynth.config import ModelConfig
from gigasynth.errors import GigasynthError
from gigasynth.io import level_shapes, open_level, open_slide
from gigasynth.synth import SynthCancelled

from .cascade_fixtures import (
    MASK_STAGE,
    write_cascade,
    write_layout,
    write_mask_cascade,
)
from .conftest import MICRO


def _level0(path: Path) -> np.ndarray:
    return np.asarray(open_level(path, 0, mode="r")[:])


def _mask_png(path: Path, mask: np.ndarray) -> Path:
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(path)
    return path


def test_mask_condition_round_trips_and_old_stages_keep_their_json():
    config = ModelConfig.from_json(MASK_STAGE.to_json())
    assert config == MASK_STAGE and config.condition_kind == "mask"
    image_stage = replace(MICRO, condition_channels=3, condition_downsample=2)
    assert "condition_kind" not in image_stage.to_dict()
    with pytest.raises(GigasynthError, match="1 condition channel"):
        replace(MASK_STAGE, condition_channels=3)
    with pytest.raises(GigasynthError, match="unknown condition_kind"):
        replace(MASK_STAGE, condition_kind="edges")
    with pytest.raises(GigasynthError, match="conditioned models only"):
        replace(MICRO, condition_kind="mask")


def test_generated_layout_tiled_equals_whole_with_its_label_and_resumes(tmp_path):
    """No layout: a generated tissue mask of the slide's size / 12 (rounded up) enters the
    mask stage; an 80x101 slide (not a multiple of 12) is the top-left crop of the 84x108
    one, the same bytes tiled on 2 workers and whole, with its pyramid, OME-TIFF and
    preview at 80x101, holds the mask as its tissue label, and a run stopped inside
    stage 3 resumes to the same bytes."""
    c = load_cascade(write_mask_cascade(tmp_path / "casc"))
    assert c.starts_from_mask and c.factor == 12 and c.entry_mpp("mask") == 8.0
    base = CascadeSettings(seed=4, eta=0.5, tile=16)
    size = (80, 101)
    levels = {}
    tiff, preview = tmp_path / "tiles.ome.tif", tmp_path / "tiles.png"
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        drawn = synthesize_cascade(
            c, None, tmp_path / "drawn.ome.zarr", replace(base, tile=0), size=(84, 108)
        )
        for name, settings in {"whole": replace(base, tile=0), "tiles": base}.items():
            seen: set[int] = set()
            result = synthesize_cascade(
                c,
                None,
                tmp_path / f"{name}.ome.zarr",
                settings,
                size=size,
                client=client,
                progress=lambda p, seen=seen: seen.add(p.stage),
                ome_tiff=tiff if name == "tiles" else None,
                preview=preview if name == "tiles" else None,
            )
            assert seen == {1, 2, 3}
            levels[name] = _level0(result.zarr_path)
        assert result.ome_tiff_path == tiff and result.preview_path == preview
        out = tmp_path / "resumed.ome.zarr"
        where: list[int] = []
        with pytest.raises(SynthCancelled):
            synthesize_cascade(
                c,
                None,
                out,
                base,
                size=size,
                client=client,
                progress=lambda p: where.append(p.stage),
                should_stop=lambda: where.count(3) > 3,
            )
        assert (cascade_work(out) / "stage-2.png").is_file() and not out.exists()
        resumed: set[int] = set()
        result = synthesize_cascade(
            c,
            None,
            out,
            base,
            size=size,
            client=client,
            resume=True,
            progress=lambda p: resumed.add(p.stage),
        )
        levels["resumed"] = _level0(result.zarr_path)
    assert resumed == {3}
    assert levels["whole"].shape == (3, 101, 80)
    assert np.array_equal(levels["whole"], _level0(drawn.zarr_path)[:, :101, :80])
    for name, level in levels.items():
        assert np.array_equal(level, levels["whole"]), name
    assert level_shapes(out) == [(101, 80)]  # the pyramid of the crop (one level here)
    with open_slide(tiff) as slide:
        assert list(slide.levels) == [(101, 80)]
    assert Image.open(preview).size == (80, 101)
    assert not cascade_work(out).exists()
    from gigasynth.io.labels import read_label

    label, scale = read_label(out, "tissue")
    expected = generate_tissue_mask(4, 7, 9, 8.0)
    assert np.array_equal(label.astype(bool), expected) and scale == 12


def test_every_output_is_checked_before_stage_1_runs(tmp_path, capsys):
    """The preview's and the OME-TIFF's suffixes and an existing OME-TIFF are refused
    before any stage runs (once the last stage's own check), through the library and the
    command line, leaving nothing behind."""
    root = write_mask_cascade(tmp_path / "casc")
    c = load_cascade(root)
    out = tmp_path / "x.ome.zarr"
    old = tmp_path / "old.ome.tif"
    old.write_bytes(b"an earlier slide")
    cases = [
        ({"preview": tmp_path / "x.jpg"}, "the preview must be a .png file"),
        ({"ome_tiff": tmp_path / "x.svs"}, "the OME-TIFF must end in .ome.tif"),
        ({"ome_tiff": old}, f"{old} exists"),
    ]
    for kwargs, fragment in cases:
        stages: list[int] = []
        with pytest.raises(GigasynthError, match=fragment):
            synthesize_cascade(
                c,
                None,
                out,
                CascadeSettings(tile=0),
                size=(24, 24),
                progress=lambda p, stages=stages: stages.append(p.stage),
                **kwargs,
            )
        assert stages == [] and not out.exists() and not cascade_work(out).exists(), fragment
    argv = ["synth", "--checkpoint", str(root), "--size", "24x24", "--out", str(out)]
    assert main([*argv, "--preview", str(tmp_path / "x.jpg")]) == 2
    captured = capsys.readouterr()
    assert "stage 1" not in captured.out and "the preview must be a .png" in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert old.read_bytes() == b"an earlier slide" and not cascade_work(out).exists()
    for given in (["--steps", "5"], ["--sampler", "ddpm"]):  # the stages carry their own
        assert main([*argv, *given]) == 2
        assert "does not apply to a cascade" in capsys.readouterr().err, given


def test_layouts_enter_where_their_kind_fits(tmp_path, slide_path):
    """A grey image is a mask and runs every stage; an RGB image skips the mask stage and
    gives the same bytes as the cascade without it; a slide taken as a mask is its tissue
    mask at 8 µm/px (its image otherwise)."""
    two = load_cascade(write_cascade(tmp_path / "two")[0])
    three = load_cascade(write_mask_cascade(tmp_path / "three", layout="given"))
    rgb = write_layout(tmp_path / "rgb.png", 7, 9)
    settings = CascadeSettings(seed=2, tile=0)
    a = synthesize_cascade(two, rgb, tmp_path / "a.ome.zarr", settings)
    b = synthesize_cascade(three, rgb, tmp_path / "b.ome.zarr", settings)
    assert np.array_equal(_level0(a.zarr_path), _level0(b.zarr_path))
    mask = np.zeros((6, 5), bool)
    mask[1:5, 1:4] = True
    grey = _mask_png(tmp_path / "mask.png", mask)
    seen: set[int] = set()
    m = synthesize_cascade(
        three, grey, tmp_path / "m.ome.zarr", settings, progress=lambda p: seen.add(p.stage)
    )
    assert seen == {1, 2, 3} and _level0(m.zarr_path).shape == (3, 72, 60)
    from gigasynth.io.labels import read_label

    label, scale = read_label(m.zarr_path, "tissue")
    assert np.array_equal(label.astype(bool), mask) and scale == 12
    rgb_label, rgb_scale = read_label(b.zarr_path, "tissue")
    assert rgb_label.shape == (9, 7) and rgb_scale == 6
    from_slide = load_layout(slide_path, three, "mask")  # its tissue mask at 8 µm/px
    assert from_slide.kind == "mask" and from_slide.mpp == 8.0
    assert from_slide.pixels.shape == (round(2967 * 0.499 / 8), round(2220 * 0.499 / 8))
    assert 0.05 < from_slide.pixels.mean() < 0.95
    assert load_layout(slide_path, three).kind == "image"  # a slide's image by default


def test_what_cannot_run_is_a_one_line_error(tmp_path):
    given = load_cascade(write_cascade(tmp_path / "two")[0])
    three = load_cascade(write_mask_cascade(tmp_path / "three"))
    mask = _mask_png(tmp_path / "mask.png", np.ones((4, 4), bool))
    rgb = write_layout(tmp_path / "rgb.png", 4, 4)
    out = tmp_path / "x.ome.zarr"
    cases = [
        (lambda: synthesize_cascade(given, mask, out), "has no mask stage"),
        (lambda: synthesize_cascade(given, None, out, size=(24, 24)), "needs a layout"),
        (lambda: synthesize_cascade(three, None, out), "needs the slide's size"),
        (lambda: synthesize_cascade(three, None, out, size=(0, 24)), "at least 1x1 px"),
        (lambda: synthesize_cascade(three, rgb, out, size=(24, 24)), "not both"),
        (
            lambda: synthesize_cascade(three, rgb, out, layout_kind="edges"),
            "unknown layout kind",
        ),
    ]
    for call, fragment in cases:
        with pytest.raises(GigasynthError) as err:
            call()
        assert fragment in str(err.value) and "\n" not in str(err.value)
    assert not out.exists() and not cascade_work(out).exists()
    root = tmp_path / "three"
    doc = json.loads((root / "cascade.json").read_text())
    for change, fragment in [
        ({"stages": [doc["stages"][1], doc["stages"][0]]}, "only stage 1 may"),
        ({"stages": doc["stages"][1:]}, "stage 1 must be a mask stage"),
    ]:
        (root / "bad.json").write_text(json.dumps({**doc, **change}))
        with pytest.raises(GigasynthError, match=fragment):
            load_cascade(root / "bad.json")


def test_cli_trains_a_mask_stage_and_synthesises_without_a_layout(tmp_path, slide_path):
    run = tmp_path / "run"
    train = [
        sys.executable,
        "-m",
        "gigasynth",
        "train",
        "--data",
        str(slide_path),
        "--region",
        "train",
        "--downsample",
        "8",
        "--size",
        "16",
        "--batch",
        "2",
        "--iterations",
        "2",
        "--condition-downsample",
        "2",
        "--condition-kind",
        "mask",
        "--min-tissue",
        "0",
        "--preset",
        "tiny",
        "--loader-workers",
        "0",
        "--quiet",
        "--out",
        str(run),
    ]
    proc = subprocess.run(train, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = read_document(str(run / "checkpoint"))
    assert doc["model"]["condition_kind"] == "mask" and doc["model"]["condition_channels"] == 1
    assert doc["meta"]["mpp"] == pytest.approx(0.499 * 8, rel=1e-3)
    assert 20 <= doc["meta"]["tissue_threshold"] <= 255
    (tmp_path / "cascade.json").write_text(
        json.dumps(
            {"layout": "generated", "stages": [{"checkpoint": "run/checkpoint", "steps": 2}]}
        )
    )
    out = tmp_path / "cli.ome.zarr"
    cmd = [sys.executable, "-m", "gigasynth", "synth", "--checkpoint", str(tmp_path)]
    cmd += ["--workers", "1", "--tile", "0", "--out", str(out)]
    proc = subprocess.run([*cmd, "--size", "32x48"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert _level0(out).shape == (3, 48, 32)
    proc = subprocess.run(  # not a multiple of the factor 2: the crop of 34x48
        [*cmd, "--size", "33x48", "--overwrite"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert _level0(out).shape == (3, 48, 33)


def test_the_bundled_cascade_is_the_demo_default():
    from gigasynth.cascade import is_cascade
    from gigasynth.checkpoint import builtin_cascade_names
    from gigasynth.cli.demo import DEMO_MODEL, DEMO_SIZE

    assert DEMO_MODEL == "builtin:skin" and "skin" in builtin_cascade_names()
    c = load_cascade(DEMO_MODEL)
    assert c.layout == "generated" and c.starts_from_mask and len(c.stages) == 2
    assert c.mpp == pytest.approx(0.998) and c.factor == 16
    assert DEMO_SIZE % c.factor == 0 and DEMO_SIZE * c.mpp >= 2000  # at least 2 mm wide
    assert not is_cascade("builtin:tiny-pathology") and not is_cascade("builtin:nope")


def test_demo_runs_a_cascade_and_refuses_steps_for_it(tmp_path, capfd):
    from gigasynth.io.labels import read_label

    root = write_mask_cascade(tmp_path / "casc")
    out = tmp_path / "demo"
    argv = ["demo", "--checkpoint", str(root), "--size", "48", "--tile", "32", "--out", str(out)]
    assert main(argv) == 0
    printed = capfd.readouterr().out
    assert "3 stages from a generated tissue mask" in printed and "labels/tissue" in printed
    assert _level0(out / "demo.ome.zarr").shape == (3, 48, 48)
    assert read_label(out / "demo.ome.zarr", "tissue")[0].shape == (4, 4)
    assert (out / "demo.ome.tif").stat().st_size > 0 and (out / "demo.png").stat().st_size > 0
    assert main([*argv, "--steps", "3"]) == 2
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--steps does not apply" in lines[0]
