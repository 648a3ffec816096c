"""Data sources: tissue detection on the real slide, npz and folders, clear errors."""

import numpy as np
import pytest
import tifffile

from gigasynth.data import open_source, open_sources
from gigasynth.data.sources import SlideSource
from gigasynth.data.tissue import otsu_threshold, saturation
from gigasynth.errors import GigasynthError

from .conftest import FACES


def test_slide_tissue_patches(slide_path):
    source = open_source(slide_path)
    assert isinstance(source, SlideSource)
    assert 0.15 < source.tissue_fraction < 0.7  # about a third tissue
    patches = source.sample(np.random.default_rng(0), 8, 64)
    assert patches.shape == (8, 64, 64, 3) and patches.dtype == np.uint8
    # Tissue patches are coloured (H&E), not white background.
    assert saturation(patches).mean() > 30
    assert source.mpp == pytest.approx(0.499, abs=0.01)


def test_downsampled_patches(slide_path):
    source = open_source(slide_path, downsample=2)
    assert source.sample(np.random.default_rng(0), 2, 32).shape == (2, 32, 32, 3)
    assert source.mpp == pytest.approx(0.998, abs=0.02)


def test_blank_slide_has_no_tissue(tmp_path):
    path = tmp_path / "blank.tif"
    tifffile.imwrite(path, np.full((512, 512, 3), 245, np.uint8), tile=(256, 256),
                     photometric="rgb")
    with pytest.raises(GigasynthError, match="no tissue"):
        open_source(path)


def test_unreadable_and_missing(tmp_path):
    bad = tmp_path / "bad.svs"
    bad.write_bytes(b"not a slide")
    with pytest.raises(GigasynthError, match="cannot read slide"):
        open_source(bad)
    with pytest.raises(GigasynthError, match="not found"):
        open_source(tmp_path / "missing.svs")
    with pytest.raises(GigasynthError, match="no data matches"):
        open_sources([str(tmp_path / "*.svs.nothing")])


def test_npz_and_folder(tmp_path):
    if not FACES.exists():
        pytest.skip("faces set missing")
    source = open_source(FACES)
    assert source.sample(np.random.default_rng(0), 3, 64).shape == (3, 64, 64, 3)
    from PIL import Image
    for i in range(3):
        Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    folder = open_source(tmp_path)
    assert folder.sample(np.random.default_rng(0), 2, 32).shape == (2, 32, 32, 3)


def test_otsu_splits_two_modes():
    values = np.concatenate([np.full(100, 20), np.full(100, 200)]).astype(np.uint8)
    assert 20 <= otsu_threshold(values) < 200
