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
    tifffile.imwrite(
        path, np.full((512, 512, 3), 245, np.uint8), tile=(256, 256), photometric="rgb"
    )
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


def write_slide(path, tissue_rows: int, side: int = 1024):
    """A tiled RGB TIFF (OpenSlide's generic-tiff) with a pink band of tissue."""
    image = np.full((side, side, 3), 245, np.uint8)
    rng = np.random.default_rng(tissue_rows)
    image[:tissue_rows] = rng.integers(0, 40, (tissue_rows, side, 3)) + [190, 90, 150]
    tifffile.imwrite(path, image, tile=(256, 256), photometric="rgb")
    return path


def test_slide_folders_globs_weights_and_the_tissue_cache(tmp_path):
    from gigasynth.data import expand_data, source_weights

    slides = tmp_path / "slides"
    slides.mkdir()
    write_slide(slides / "a.tif", 256)
    write_slide(slides / "b.tif", 768)
    (slides / "broken.svs").write_bytes(b"not a slide at all")
    cache = tmp_path / "run" / "tissue"
    warned: list[str] = []
    sources = open_sources([str(slides)], tissue_cache=cache, warn=warned.append)
    assert [s.name for s in sources] == [str(slides / "a.tif"), str(slides / "b.tif")]
    assert len(warned) == 1 and "broken.svs" in warned[0]
    with pytest.raises(GigasynthError, match="cannot read slide .*broken.svs"):
        open_sources([str(slides)], strict=True)
    # Slides are drawn in proportion to their tissue area (here 1 : 3), or equally.
    weights = source_weights(sources)
    assert weights[1] / weights[0] == pytest.approx(3.0, rel=0.05)
    assert source_weights(sources, "equal").tolist() == [0.5, 0.5]
    assert expand_data([str(slides / "*.tif")]) == [slides / "a.tif", slides / "b.tif"]
    with pytest.raises(GigasynthError, match="no data matches"):
        open_sources([str(slides / "*.ndpi")])
    # Masks are computed once: a second opening reads the cache (here, an edited one).
    (cached,) = [
        p for p in cache.glob("*.npz") if str(slides / "a.tif") in str(np.load(p)["slide"])
    ]
    assert len(list(cache.glob("*.npz"))) == 2
    np.savez(cached, mask=np.ones((64, 64), bool), slide=str(slides / "a.tif"))
    again = open_sources([str(slides / "a.tif")], tissue_cache=cache)
    assert again[0].tissue_fraction == 1.0


def test_slide_sources_travel_to_worker_processes(tmp_path):
    import pickle

    source = open_source(write_slide(tmp_path / "s.tif", 512))
    copy = pickle.loads(pickle.dumps(source))
    a = source.sample(np.random.default_rng(5), 3, 32)
    b = copy.sample(np.random.default_rng(5), 3, 32)
    assert np.array_equal(a, b) and saturation(a).mean() > 30
