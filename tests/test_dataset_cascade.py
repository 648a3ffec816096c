"""Cascade datasets: each patch a cascade run on a generated tissue mask
or on a layout file, the same on 1 and 2 Dask workers, resumable after a lost shard, its
metadata and tissue mask beside it, equal to sample_cascade (and so to the whole-image
synthesize_cascade), and one-line errors for what cannot be made."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gigasynth.cascade import load_cascade
from gigasynth.cascade.layout import load_layout
from gigasynth.cascade.patches import sample_cascade
from gigasynth.cascade.synth import CascadeSettings, make_layout, synthesize_cascade
from gigasynth.cli import main
from gigasynth.dataset import SyntheticPatches, encode_png, make_dataset, read_manifest, regenerate
from gigasynth.dataset.folder import DATASET_JSON
from gigasynth.errors import GigasynthError
from gigasynth.io import open_level
from gigasynth.keyed import mix_int

from .cascade_fixtures import write_cascade, write_layout, write_mask_cascade

# 22x35 is not a multiple of the cascade's factor 12: each patch is the crop of a 24x36 one.
SETTINGS = dict(count=5, size=(22, 35), seed=11, eta=0.5, shard_size=2, progress=False)


@pytest.fixture(scope="module")
def cascade_root(tmp_path_factory) -> Path:
    """The 3-stage mask cascade (factor 12), layouts generated."""
    return write_mask_cascade(tmp_path_factory.mktemp("cascade") / "c")


@pytest.fixture(scope="module")
def tar_dataset(cascade_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "data"
    result = make_dataset(str(cascade_root), out, format="tar", **SETTINGS)
    assert result.made_patches == 5 and result.spec.shards == 3
    return out


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def shard_files(folder: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree_bytes(folder).items() if k.startswith("shard-")}


def _mask_png(path: Path, mask: np.ndarray) -> Path:
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(path)
    return path


def test_sample_cascade_is_the_whole_image_synthesis(cascade_root, tmp_path):
    """sample_cascade gives synthesize_cascade's level 0 (tile 0) for the same layout and
    seed: a generated mask entering the mask stage, and an RGB layout entering stage 2."""
    c = load_cascade(cascade_root)
    settings = CascadeSettings(seed=9, eta=0.5, tile=0)
    rgb = write_layout(tmp_path / "rgb.png", 5, 3)
    for name, layout, size in [("generated", None, (48, 36)), ("rgb", rgb, None)]:
        out = tmp_path / f"{name}.ome.zarr"
        result = synthesize_cascade(c, layout, out, settings, size=size)
        level0 = np.asarray(open_level(result.zarr_path, 0, mode="r")[:]).transpose(1, 2, 0)
        start = make_layout(c, layout, 9, size)
        image = sample_cascade(c, start, 9, eta=0.5)
        assert image.dtype == np.uint8 and image.shape == level0.shape, name
        assert np.array_equal(image, level0), name
    assert level0.shape == (18, 30, 3)  # 5x3 px at 4 µm/px, through 2x and 3x stages


def test_two_workers_equal_one_and_a_lost_shard_is_made_again(
    cascade_root, tar_dataset, tmp_path, capsys
):
    two = tmp_path / "two"
    args = [
        "dataset",
        "--quiet",
        "--checkpoint",
        str(cascade_root),
        "--out",
        str(two),
        "--count",
        "5",
        "--size",
        "22x35",
        "--seed",
        "11",
        "--eta",
        "0.5",
        "--shard-size",
        "2",
        "--format",
        "tar",
        "--workers",
        "2",
    ]
    assert main(args) == 0  # a real LocalCluster of 2 worker processes
    assert "wrote 5 patches in 3 tar shards" in capsys.readouterr().out
    assert shard_files(two) == shard_files(tar_dataset)
    assert read_manifest(two) == read_manifest(tar_dataset)
    doc = json.loads((two / DATASET_JSON).read_text())
    assert (
        doc["complete"] and "--sampler" not in doc["command"] and "--size 22x35" in doc["command"]
    )
    # A lost shard is made again (one shard made), to the same bytes, on 2 workers.
    before = tree_bytes(two)
    (two / "shard-000001.tar").unlink()
    assert main(args) == 0
    assert "made 2 in" in capsys.readouterr().out
    assert tree_bytes(two) == before
    # The same dataset in a folder holding it: nothing to do.
    assert main(args) == 0
    assert "already holds the complete dataset" in capsys.readouterr().out


def test_metadata_mask_and_patch_are_the_cascade_run(cascade_root, tar_dataset):
    c = load_cascade(cascade_root)
    stages = [s.sha256 for s in c.stages]
    data = SyntheticPatches(tar_dataset)
    assert len(data) == 5
    with tarfile.open(tar_dataset / "shard-000001.tar") as tar:
        assert tar.getnames() == [
            f"{k:06d}{suffix}" for k in (2, 3) for suffix in (".png", ".mask.png", ".json")
        ]
        assert json.loads(tar.extractfile("000003.json").read()) == data.records[3]
    fractions = set()
    for k in range(5):
        image, meta = data[k]
        seed = mix_int(11, k)
        assert meta["seed"] == seed and meta["dataset_seed"] == 11 and meta["synthetic"]
        assert [s["sha256"] for s in meta["stages"]] == stages
        assert [s["steps"] for s in meta["stages"]] == [2, 3, 2]
        assert meta["layout"] == {"source": "generated", "seed": seed}
        assert meta["size"] == [22, 35] and meta["eta"] == 0.5 and meta["model"] == "cascade"
        assert meta["mask"] == f"{k:06d}.mask.png"
        mask = data.tissue_mask(k)
        layout = make_layout(c, None, seed, (22, 35))  # 2x3 mask pixels of 12x12 px
        expected = np.repeat(np.repeat(layout.pixels, 12, axis=0), 12, axis=1)[:35, :22]
        assert mask.shape == (35, 22) and np.array_equal(mask, expected)
        assert meta["tissue_fraction"] == pytest.approx(mask.mean(), abs=1e-6)
        fractions.add(meta["tissue_fraction"])
        patch = sample_cascade(c, layout, seed, eta=0.5)[:35, :22]
        assert np.array_equal((image.permute(1, 2, 0).numpy() * 255).round(), patch)
    (again,) = regenerate(tar_dataset, [3])  # alone, out of its shard
    assert again.metadata == data.records[3]
    assert np.array_equal(again.tissue, data.tissue_mask(3))
    with tarfile.open(tar_dataset / "shard-000001.tar") as tar:
        assert encode_png(again.image) == tar.extractfile("000003.png").read()
    assert all(0.0 <= f <= 1.0 for f in fractions)


def test_layouts_folder_cycles_with_each_patch_at_its_layout_size(cascade_root, tmp_path):
    """Grey images are masks (entering the mask stage, 12x), colour ones RGB layouts
    (entering stage 2, 6x); patch i takes layout i mod n by name; sizes may differ
    unless --size is given, which must then be every layout's."""
    c = load_cascade(cascade_root)
    layouts = tmp_path / "layouts"
    layouts.mkdir()
    mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]], bool)
    _mask_png(layouts / "a-mask.png", mask)
    write_layout(layouts / "b-rgb.png", 8, 6)
    (layouts / "notes.txt").write_text("not a layout")
    out = tmp_path / "data"
    common = dict(count=3, seed=5, shard_size=2, progress=False)
    result = make_dataset(str(cascade_root), out, size=None, layouts=layouts, **common)
    assert (result.spec.width, result.spec.height) == (48, 36)
    records = read_manifest(out)
    assert [r["layout"]["file"] for r in records] == ["a-mask.png", "b-rgb.png", "a-mask.png"]
    digest = hashlib.sha256((layouts / "b-rgb.png").read_bytes()).hexdigest()
    assert records[1]["layout"]["sha256"] == digest
    assert records[0]["tissue_fraction"] == pytest.approx(mask.mean(), abs=1e-6)
    assert sorted(p.name for p in (out / "shard-000000").iterdir()) == [
        "000000.mask.png",
        "000000.png",
        "000001.mask.png",
        "000001.png",
    ]
    data = SyntheticPatches(out)
    for k, name in enumerate(["a-mask.png", "b-rgb.png", "a-mask.png"]):
        image, meta = data[k]
        layout = load_layout(layouts / name, c)
        patch = sample_cascade(c, layout, mix_int(5, k))
        assert np.array_equal((image.permute(1, 2, 0).numpy() * 255).round(), patch)
        assert data.tissue_mask(k).mean() == pytest.approx(meta["tissue_fraction"], abs=1e-6)
    # A --size every layout gives is the same dataset; one they do not give is refused.
    again = make_dataset(str(cascade_root), out, size=(48, 36), layouts=layouts, **common)
    assert again.made_shards == 0
    with pytest.raises(GigasynthError, match=r"layout a-mask.png gives a 48x36 patch, not"):
        make_dataset(str(cascade_root), tmp_path / "x", size=(24, 24), layouts=layouts, **common)
    # Layouts of different sizes: each patch its own.
    write_layout(layouts / "c-small.png", 4, 2)
    mixed = tmp_path / "mixed"
    make_dataset(str(cascade_root), mixed, size=None, layouts=layouts, **common)
    assert [r["size"] for r in read_manifest(mixed)] == [[48, 36], [48, 36], [24, 12]]
    assert SyntheticPatches(mixed)[2][0].shape == (3, 12, 24)
    # A layout changed after the dataset was made: regenerating it is refused.
    write_layout(layouts / "c-small.png", 4, 2, seed=99)
    with pytest.raises(GigasynthError, match="changed since the dataset was made"):
        list(regenerate(mixed, [2]))
    with pytest.raises(GigasynthError, match=r"holds another dataset \(cascade layouts differ\)"):
        make_dataset(str(cascade_root), mixed, size=None, layouts=layouts, **common)


def one_line_error(capsys, args: list[str]) -> str:
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("gigasynth: error:"), err
    return err[0]


def test_bad_input_is_one_line(cascade_root, tmp_path, capsys):
    out = tmp_path / "out"

    def args(checkpoint: Path | str = cascade_root, *extra: str) -> list[str]:
        base = ["dataset", "--quiet", "--checkpoint", str(checkpoint), "--count", "2"]
        return [*base, "--out", str(out), *extra]

    assert "needs a --size or --layouts" in one_line_error(capsys, args())
    given = write_cascade(tmp_path / "given")[0]
    line = one_line_error(capsys, args(given, "--size", "24"))
    assert "generates no layouts" in line and "--layouts" in line
    assert "own sampler and steps" in one_line_error(
        capsys, args(cascade_root, "--size", "24", "--steps", "3")
    )
    assert "--batch 1" in one_line_error(capsys, args(cascade_root, "--size", "24", "--batch", "2"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no layout images" in one_line_error(
        capsys, args(cascade_root, "--layouts", str(empty))
    )
    assert "is not a folder" in one_line_error(
        capsys, args(cascade_root, "--layouts", str(tmp_path / "none"))
    )
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "fake.png").write_text("not an image")
    assert "is not an image" in one_line_error(capsys, args(cascade_root, "--layouts", str(bad)))
    # An RGB layout for a cascade that draws from masks only.
    masks_only = tmp_path / "masks-only"
    shutil.copytree(cascade_root, masks_only)
    doc = json.loads((masks_only / "cascade.json").read_text())
    doc["stages"] = doc["stages"][:1]
    (masks_only / "cascade.json").write_text(json.dumps(doc))
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    write_layout(rgb / "r.png", 4, 4)
    assert "draws from a tissue mask only" in one_line_error(
        capsys, args(masks_only, "--layouts", str(rgb))
    )
    # A plain checkpoint takes no layouts, and needs a size.
    checkpoint = cascade_root / "s1"
    assert "--layouts needs a cascade" in one_line_error(
        capsys, args(checkpoint, "--layouts", str(rgb))
    )
    assert "give the patch --size" in one_line_error(capsys, args(checkpoint))
    assert not out.exists()
