"""A cascade of conditioned stages: its definition is
checked on load, its slide from a layout is the same bytes tiled or whole and after a
resume inside a later stage, and bad definitions and layouts are one-line errors."""

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
from gigasynth.cascade.layout import read_layout
from gigasynth.cascade.synth import CascadeSettings, cascade_work, synthesize_cascade
from gigasynth.errors import GigasynthError
from gigasynth.images import to_model_space, to_uint8
from gigasynth.io import open_level
from gigasynth.io.omezarr import read_zarr_metadata
from gigasynth.sampling import SampleRequest, super_resolve
from gigasynth.synth import SynthCancelled

from .cascade_fixtures import MPP1, MPP2, STAGE1, STAGE2
from .cascade_fixtures import write_layout as _layout
from .cascade_fixtures import write_stage as _stage
from .conftest import MICRO


def _level0(path: Path) -> np.ndarray:
    return np.asarray(open_level(path, 0, mode="r")[:])


def test_definition_is_checked_and_shown(cascade, tmp_path):
    root, _, _ = cascade
    c = load_cascade(root)
    assert [s.mpp for s in c.stages] == [MPP1, MPP2]
    assert c.factor == 6 and c.layout_mpp == 4.0 and c.mpp == MPP2
    assert load_cascade(root / "cascade.json") == c
    proc = subprocess.run(
        [sys.executable, "-m", "gigasynth", "info", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "stage 2" in proc.stdout and "3x to 0.6667 µm/px" in proc.stdout
    assert "read at 4 µm/px" in proc.stdout

    _stage(tmp_path / "plain", MICRO, 1.0, 2)
    _stage(tmp_path / "nompp", STAGE2, None, 3)
    _stage(tmp_path / "s2b", STAGE1, 1.0, 4)  # 2x, but 2 -> 1 µm/px is fine...
    s1, s2 = str(root / "s1"), str(root / "s2")
    bad = {
        "missing checkpoint": ({"stages": [{"checkpoint": s1}, {"checkpoint": "nope"}]}, "stage 2"),
        "no chain": (
            {
                "stages": [
                    {"checkpoint": s1},
                    {"checkpoint": str(tmp_path / "s2b")},
                    {"checkpoint": s2},
                ]
            },
            "do not chain",
        ),
        "unconditioned": (
            {"stages": [{"checkpoint": str(tmp_path / "plain")}]},
            "not a conditioned stage",
        ),
        "no mpp": (
            {"stages": [{"checkpoint": s1}, {"checkpoint": str(tmp_path / "nompp")}]},
            "records no µm per pixel",
        ),
        "wrong mpp": ({"stages": [{"checkpoint": s1, "mpp": 1.5}]}, "not"),
        "empty": ({"stages": []}, "non-empty list"),
        "sampler": ({"stages": [{"checkpoint": s1, "sampler": "euler"}]}, "unknown sampler"),
        "steps": ({"stages": [{"checkpoint": s1, "steps": 500}]}, "exceeds"),
        "layout source": ({"layout": "drawn", "stages": [{"checkpoint": s1}]}, "layout source"),
        "generated, no mask stage": (
            {"layout": "generated", "stages": [{"checkpoint": s1}]},
            "stage 1 must be a mask stage",
        ),
        "unknown key": ({"stages": [{"checkpoint": s1}], "stagez": []}, "unknown field"),
    }
    for name, (doc, fragment) in bad.items():
        path = tmp_path / f"{name.replace(' ', '-')}.json"
        path.write_text(json.dumps(doc))
        with pytest.raises(GigasynthError) as err:
            load_cascade(path)
        assert fragment in str(err.value) and "\n" not in str(err.value), (name, err.value)
    with pytest.raises(GigasynthError, match="checkpoint's config"):
        load_cascade(root / "s1" / "config.json")
    (tmp_path / "broken.json").write_text("{stages")
    with pytest.raises(GigasynthError, match="unreadable JSON"):
        load_cascade(tmp_path / "broken.json")
    # A stated mpp stands in for a checkpoint that records none.
    (tmp_path / "ok.json").write_text(
        json.dumps(
            {"stages": [{"checkpoint": s1}, {"checkpoint": str(tmp_path / "nompp"), "mpp": MPP2}]}
        )
    )
    assert load_cascade(tmp_path / "ok.json").mpp == MPP2


def test_tiled_equals_whole_and_resumes_inside_stage_2(cascade, tmp_path):
    """Layout 7x9 -> stage 1 14x18 -> stage 2 42x54: tiled on 2 workers (tiles of 16 px,
    halo 4; and blocks of 2 diffusion steps per task, I6) == whole image == the library
    sampler chained by hand; a run stopped inside stage 2 resumes without redoing stage 1,
    to the same bytes."""
    root, m1, m2 = cascade
    c = load_cascade(root)
    layout = _layout(tmp_path / "layout.png", 7, 9)
    base = CascadeSettings(seed=5, eta=0.5, tile=16)
    levels = {}
    stages_seen: dict[str, set[int]] = {}
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        for name, settings in {"whole": replace(base, tile=0), "tiles": base}.items():
            seen = stages_seen.setdefault(name, set())
            result = synthesize_cascade(
                c,
                layout,
                tmp_path / f"{name}.ome.zarr",
                settings,
                client=client,
                progress=lambda p, seen=seen: seen.add(p.stage),
            )
            levels[name] = _level0(result.zarr_path)
            assert not cascade_work(result.zarr_path).exists()
        # Blocks of 2 diffusion steps per tile task (halo 8 = half a tile), every stage.
        blocks = synthesize_cascade(
            c, layout, tmp_path / "blocks.ome.zarr", base, client=client, block_steps=2
        )
        levels["blocks"] = _level0(blocks.zarr_path)
        with pytest.raises(GigasynthError, match="stage 1 of 2: block_steps 3 needs a halo"):
            synthesize_cascade(c, layout, tmp_path / "b3.ome.zarr", base, block_steps=3)
        assert not cascade_work(tmp_path / "b3.ome.zarr").exists()
        out = tmp_path / "resumed.ome.zarr"
        where: list[int] = []
        with pytest.raises(SynthCancelled):
            synthesize_cascade(
                c,
                layout,
                out,
                base,
                client=client,
                progress=lambda p: where.append(p.stage),
                should_stop=lambda: (
                    bool(where) and where[-1] == 2 and len([s for s in where if s == 2]) > 4
                ),
            )
        work = cascade_work(out)
        assert (work / "stage-1.png").is_file() and not out.exists()
        assert Path(f"{out}.work").is_dir()  # stopped inside stage 2 (the engine's)
        with pytest.raises(GigasynthError, match="pass resume to continue"):
            synthesize_cascade(c, layout, out, base, client=client)
        with pytest.raises(GigasynthError, match="another job"):
            synthesize_cascade(c, layout, out, replace(base, seed=6), client=client, resume=True)
        seen_resumed: set[int] = set()
        result = synthesize_cascade(
            c,
            layout,
            out,
            base,
            client=client,
            resume=True,
            progress=lambda p: seen_resumed.add(p.stage),
        )
        levels["resumed"] = _level0(result.zarr_path)
    assert stages_seen["tiles"] == {1, 2} and seen_resumed == {2}
    assert read_zarr_metadata(out).mpp == pytest.approx(MPP2)
    low = to_model_space(np.array(Image.open(layout)))
    mid = to_uint8(super_resolve(m1, low, [5], SampleRequest("ddim", 3, 0.5)))[0]
    final = super_resolve(m2, to_model_space(mid), [5], SampleRequest("ddim", 2, 0.5))
    expected = to_uint8(final)[0].transpose(2, 0, 1)
    assert expected.shape == (3, 54, 42)
    for name, level in levels.items():
        assert np.array_equal(level, expected), name


def test_bad_layouts_are_one_line_errors(cascade, tmp_path, monkeypatch, slide_path):
    root, _, _ = cascade
    c = load_cascade(root)
    out = tmp_path / "x.ome.zarr"
    text = tmp_path / "notes.png"
    text.write_text("not an image\n")
    empty = tmp_path / "empty.png"
    empty.touch()
    big = _layout(tmp_path / "big.png", 40, 30)
    cases = [
        (text, "is not an image"),
        (empty, "is empty"),
        (tmp_path / "missing.png", "not found"),
    ]
    for layout, fragment in cases:
        with pytest.raises(GigasynthError) as err:
            synthesize_cascade(c, layout, out)
        assert fragment in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setattr("gigasynth.cascade.layout.MAX_LAYOUT_PIXELS", 1000)
    with pytest.raises(GigasynthError, match="too large"):
        synthesize_cascade(c, big, out)
    monkeypatch.undo()
    # A layout whose slide the engine cannot make in one task: named by the stage.
    monkeypatch.setattr("gigasynth.synth.job.MAX_WHOLE_IMAGE_PIXELS", 10000)
    with pytest.raises(GigasynthError) as err:
        synthesize_cascade(c, big, out, CascadeSettings(tile=0))
    assert "stage 2 of 2" in str(err.value) and "240x180" in str(err.value)
    monkeypatch.undo()
    with pytest.raises(GigasynthError, match=r"tile 6 px is smaller"):
        synthesize_cascade(c, big, out, CascadeSettings(tile=6))
    assert not out.exists() and not cascade_work(out).exists()
    # A slide is read at the first stage's input resolution (4 µm/px; 0.499 at level 0).
    rgb = read_layout(slide_path, c.layout_mpp)
    assert rgb.shape == (round(2967 * 0.499 / 4), round(2220 * 0.499 / 4), 3)
    assert 100 < rgb.mean() < 250 and rgb.std() > 5


@pytest.mark.slow
def test_cli_runs_a_cascade(cascade, tmp_path):
    root, _, _ = cascade
    layout = _layout(tmp_path / "layout.png", 5, 4)
    out = tmp_path / "cli.ome.zarr"
    cmd = [
        sys.executable,
        "-m",
        "gigasynth",
        "synth",
        "--checkpoint",
        str(root),
        "--workers",
        "1",
        "--tile",
        "0",
        "--seed",
        "2",
        "--out",
        str(out),
    ]
    proc = subprocess.run(
        [*cmd, "--layout", str(layout)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "stage 1/2" in proc.stdout and "stage 2/2" in proc.stdout
    assert _level0(out).shape == (3, 24, 30)
    for extra, fragment in [
        ([], "give its layout"),
        (["--layout", str(root / "cascade.json")], "not an image"),
        (["--layout", str(layout), "--size", "30x24"], "--size"),
    ]:
        proc = subprocess.run(
            [*cmd, "--overwrite", *extra], capture_output=True, text=True, timeout=300
        )
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode != 0 and len(lines) == 1 and fragment in lines[0], proc.stderr
