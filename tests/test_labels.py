"""Tissue masks as NGFF 0.4 label images in the OME-Zarr (gigasynth.io.labels): round trip,
metadata checked with ome-zarr-models, the image's readers unaffected, atomic writes, and
one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr_models.v04.bioformats2raw import BioFormats2Raw
from ome_zarr_models.v04.image_label import ImageLabel
from ome_zarr_models.v04.labels import Labels

import gigasynth.io.labels as labels_module
from gigasynth.cascade.masks import generate_tissue_mask
from gigasynth.errors import GigasynthError
from gigasynth.io import (
    DeepZoomGenerator,
    SlideMetadata,
    build_pyramid,
    create_ome_zarr,
    open_level,
    open_slide,
    read_label,
    write_label,
)
from gigasynth.io.labels import halve_any

MPP = 0.499  # the real slide's µm per pixel: not a power of two
PROVENANCE = {"seed": 1, "synthetic_test": True}


def make_slide(path: Path, width: int, height: int, pixels: bool) -> Path:
    """An OME-Zarr of `width` x `height` px; with `pixels`, a pattern and its pyramid."""
    meta = SlideMetadata(width=width, height=height, mpp=MPP, provenance=PROVENANCE)
    level0 = create_ome_zarr(path, meta, chunk=256)
    if pixels:
        y, x = np.mgrid[0:height, 0:width]
        level0[:] = np.stack([(x * 3 + c * 50 + y) % 256 for c in range(3)]).astype(np.uint8)
        build_pyramid(path)
    return path


@pytest.fixture
def slide(tmp_path) -> Path:
    """A finished 700 x 500 px slide (3 pyramid levels)."""
    return make_slide(tmp_path / "slide.ome.zarr", 700, 500, pixels=True)


@pytest.fixture
def big(tmp_path) -> Path:
    """A 2,400 x 1,800 px slide (level 0 left empty): a 4x mask of it has three levels."""
    return make_slide(tmp_path / "big.ome.zarr", 2400, 1800, pixels=False)


def hidden_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_round_trip_and_whole_number_scale(slide, big):
    mask = generate_tissue_mask(4, 175, 125, 16.0)  # 700 x 500 px at 4 image px per mask px
    assert write_label(slide, "tissue", mask, 4) == slide / "0" / "labels" / "tissue"
    got, scale = read_label(slide, "tissue")
    assert got.dtype == bool and np.array_equal(got, mask)
    assert scale == 4.0 and isinstance(scale, float)

    odd = generate_tissue_mask(5, 960, 720, 16.0)  # 2,400 / 2.5 x 1,800 / 2.5
    write_label(big, "tissue", odd, 2.5)
    got, scale = read_label(big, "tissue")
    assert np.array_equal(got, odd) and scale == pytest.approx(2.5, rel=1e-12)


def test_metadata_validates_as_ngff_04_labels(big):
    mask = generate_tissue_mask(6, 600, 450, 16.0)
    write_label(big, "tissue", mask, 4)
    root = zarr.open_group(str(big), mode="r", zarr_format=2)
    model = BioFormats2Raw.from_zarr(root)  # the whole file, labels included, still valid
    labels = model.images["0"].labels
    assert labels is not None and labels.attributes.labels == ["tissue"]
    assert Labels.from_zarr(root["0/labels"]).attributes.labels == ["tissue"]
    label = ImageLabel.from_zarr(root["0/labels/tissue"])
    meta = label.attributes.image_label
    assert [(c.label_value, c.rgba) for c in meta.colors] == [
        (0, (0, 0, 0, 0)),
        (1, (46, 204, 113, 128)),
    ]
    assert meta.source.image == "../../" and meta.version == "0.4"
    multiscale = label.attributes.multiscales[0]
    assert [a.name for a in multiscale.axes] == ["c", "y", "x"]
    for level, dataset in enumerate(multiscale.datasets):
        scale, translation = dataset.coordinateTransformations
        span = 4 * 2**level  # image pixels per label pixel
        assert scale.scale == pytest.approx([1.0, MPP * span, MPP * span])
        assert translation.translation == pytest.approx([0.0, *[MPP * (span - 1) / 2] * 2])
    level0, level1 = (np.asarray(root[f"0/labels/tissue/{n}"]) for n in ("0", "1"))
    assert level0.shape == (1, 450, 600) and level0.dtype == np.uint8
    assert set(np.unique(level0)) == {0, 1}
    assert level1.shape == (1, 225, 300)
    assert np.array_equal(level1, level0.reshape(1, 225, 2, 300, 2).max(axis=(2, 4)))
    assert [root[f"0/labels/tissue/{d.path}"].shape for d in multiscale.datasets] == [
        (1, 450, 600),
        (1, 225, 300),
        (1, 113, 150),  # halved until the longer side is at most 256 px
    ]


def test_halve_any_at_odd_edges():
    level = np.zeros((1, 3, 5), np.uint8)
    level[0, 2, 4] = 1
    level[0, 0, 1] = 1
    assert halve_any(level)[0].tolist() == [[1, 0, 0], [0, 0, 1]]


def test_the_image_readers_ignore_labels(slide):
    def view() -> tuple[object, ...]:
        with open_slide(slide) as reader:
            dz = DeepZoomGenerator(reader)
            tile = np.asarray(dz.get_tile(dz.level_count - 2, (1, 0)))
            return reader.levels, reader.read_region(1, 10, 20, 100, 120), dz.level_count, tile

    before = view()
    write_label(slide, "tissue", generate_tissue_mask(1, 175, 125, 16.0), 4)
    after = view()
    assert before[0] == after[0] and before[2] == after[2]
    assert np.array_equal(before[1], after[1]) and np.array_equal(before[3], after[3])
    assert open_level(slide, 2).shape == (3, 125, 175)


def test_second_label_and_rewrite(slide):
    first = generate_tissue_mask(1, 175, 125, 16.0)
    write_label(slide, "tissue", first, 4)
    write_label(slide, "coarse", generate_tissue_mask(2, 22, 16, 16.0), 32)
    second = generate_tissue_mask(3, 175, 125, 16.0)
    write_label(slide, "tissue", second, 4)
    labels_dir = slide / "0" / "labels"
    assert zarr.open_group(str(labels_dir), mode="r").attrs["labels"] == ["tissue", "coarse"]
    assert np.array_equal(read_label(slide, "tissue")[0], second)
    assert read_label(slide, "coarse")[1] == 32.0
    assert hidden_entries(labels_dir) == [".zattrs", ".zgroup"]


class DiskFull(OSError):
    """Stands in for a write that fails half-way (raised after level 0 is on disk)."""


def test_failed_write_leaves_no_partial_label(big, monkeypatch):
    mask = generate_tissue_mask(7, 600, 450, 16.0)

    def fail(level: np.ndarray) -> np.ndarray:
        raise DiskFull("no space left on device")

    with monkeypatch.context() as patch:  # the first label: no labels group at all afterwards
        patch.setattr(labels_module, "halve_any", fail)
        with pytest.raises(DiskFull):
            write_label(big, "tissue", mask, 4)
    assert not (big / "0" / "labels").exists()
    assert hidden_entries(big / "0") == [".zattrs", ".zgroup"]

    write_label(big, "tissue", mask, 4)
    with monkeypatch.context() as patch:  # a second label, then a rewrite: nothing changes
        patch.setattr(labels_module, "halve_any", fail)
        with pytest.raises(DiskFull):
            write_label(big, "other", mask, 4)
        with pytest.raises(DiskFull):
            write_label(big, "tissue", ~mask, 4)
    labels_dir = big / "0" / "labels"
    assert sorted(p.name for p in labels_dir.iterdir()) == [".zattrs", ".zgroup", "tissue"]
    assert zarr.open_group(str(labels_dir), mode="r").attrs["labels"] == ["tissue"]
    assert np.array_equal(read_label(big, "tissue")[0], mask)


@pytest.mark.parametrize(
    ("name", "mask", "scale", "message"),
    [
        ("tissue", np.ones((125, 175, 1), bool), 4, "must be a non-empty 2-D bool array"),
        ("tissue", np.ones((125, 175), np.uint8), 4, "must be a non-empty 2-D bool array"),
        ("tissue", np.ones((0, 175), bool), 4, "must be a non-empty 2-D bool array"),
        ("tissue", [[True]], 4, "must be a non-empty 2-D bool array"),
        ("a/b", np.ones((125, 175), bool), 4, "label name must be"),
        ("", np.ones((125, 175), bool), 4, "label name must be"),
        (".hidden", np.ones((125, 175), bool), 4, "label name must be"),
        ("..", np.ones((125, 175), bool), 4, "label name must be"),
        (3, np.ones((125, 175), bool), 4, "label name must be"),
        ("tissue", np.ones((125, 175), bool), 0, "positive finite"),
        ("tissue", np.ones((125, 175), bool), float("nan"), "positive finite"),
        ("tissue", np.ones((125, 175), bool), True, "must be a number"),
        ("tissue", np.ones((125, 175), bool), 8, "must be 88x63 px, got 175x125"),
        ("tissue", np.ones((126, 175), bool), 4, "must be 175x125 px, got 175x126"),
    ],
)
def test_bad_input_is_one_line_error(slide, name, mask, scale, message):
    with pytest.raises(GigasynthError, match=message) as info:
        write_label(slide, name, mask, scale)
    assert "\n" not in str(info.value)
    assert not (slide / "0" / "labels").exists()


def test_bad_reads_are_one_line_errors(slide, tmp_path):
    with pytest.raises(GigasynthError, match=r"no label 'tissue' in .* \(labels: none\)"):
        read_label(slide, "tissue")
    write_label(slide, "tissue", np.ones((125, 175), bool), 4)
    with pytest.raises(GigasynthError, match=r"no label 'other' in .* \(labels: tissue\)"):
        read_label(slide, "other")
    with pytest.raises(GigasynthError, match="not found"):
        write_label(tmp_path / "missing.ome.zarr", "tissue", np.ones((2, 2), bool), 4)
    with pytest.raises(GigasynthError, match="label name must be"):
        read_label(slide, "../0")
    (slide / "0" / "labels" / "tissue" / ".zattrs").write_text("{}")
    with pytest.raises(GigasynthError, match="listed but not a readable NGFF label") as info:
        read_label(slide, "tissue")
    assert "\n" not in str(info.value)
