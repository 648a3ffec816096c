"""OME-Zarr and OME-TIFF outputs: real files, checked with the validators and readers QuPath-like
tools use (ome-types, ome-zarr-models, tifffile, large-image), and read back through
gigasynth's own reader and DeepZoom generator."""

from __future__ import annotations

import io
import json
import math
import tracemalloc
import types
import xml.etree.ElementTree as ET
from itertools import product
from pathlib import Path

import numpy as np
import ome_types
import pytest
import tifffile
import zarr
from ome_zarr_models.v04.bioformats2raw import BioFormats2Raw
from PIL import Image

from gigasynth.errors import GigasynthError
from gigasynth.io import (
    DeepZoomGenerator,
    SlideMetadata,
    build_pyramid,
    create_ome_zarr,
    level_shapes,
    open_level,
    open_slide,
    read_metadata,
    read_provenance,
    write_ome_tiff,
    write_preview,
)
from gigasynth.io.omexml import nominal_magnification

WIDTH, HEIGHT, CHUNK, MPP = 1001, 777, 256, 0.25  # odd sizes, not chunk multiples
PROVENANCE = {
    "checkpoint_sha256": "5e" * 32,
    "seed": 1234,
    "sampler": "ddim",
    "steps": 50,
    "eta": 0.0,
}
EXPECTED_SHAPES = [(777, 1001), (389, 501), (195, 251)]


def slide_pixels() -> np.ndarray:
    """A smooth colour pattern with mild noise: (3, H, W) uint8, JPEG-friendly but not flat."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    channels = [
        128 + 90 * np.sin(x / (31 + 7 * c) + c) * np.cos(y / (23 + 5 * c)) for c in range(3)
    ]
    noise = np.random.default_rng(7).integers(-3, 4, (3, HEIGHT, WIDTH))
    return np.clip(np.stack(channels) + noise, 0, 255).astype(np.uint8)


def reference_half(level: np.ndarray) -> np.ndarray:
    """Mean of the existing pixels of each 2x2 window (windows clipped at odd edges), half up."""
    rows, cols = range(0, level.shape[1], 2), range(0, level.shape[2], 2)

    def window_sums(a: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.add.reduceat(a, rows, axis=1), cols, axis=2)

    sums = window_sums(level.astype(np.int64))
    counts = window_sums(np.ones_like(level, dtype=np.int64))
    return np.floor(sums / counts + 0.5).astype(np.uint8)


def fill_chunk_by_chunk(level0: zarr.Array, pixels: np.ndarray) -> None:
    """Write level 0 the way the engine does: each chunk once, by one writer."""
    rows, cols = level0.cdata_shape[1:]
    for row, col in product(range(rows), range(cols)):
        ys, xs = slice(row * CHUNK, (row + 1) * CHUNK), slice(col * CHUNK, (col + 1) * CHUNK)
        level0[:, ys, xs] = pixels[:, ys, xs]


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return slide_pixels()


@pytest.fixture(scope="module")
def slide(tmp_path_factory, pixels) -> Path:
    """A finished OME-Zarr (level 0 written chunk by chunk, pyramid built in-process)."""
    path = tmp_path_factory.mktemp("io") / "slide.ome.zarr"
    meta = SlideMetadata(width=WIDTH, height=HEIGHT, mpp=MPP, provenance=PROVENANCE)
    fill_chunk_by_chunk(create_ome_zarr(path, meta, chunk=CHUNK), pixels)
    assert build_pyramid(path) == EXPECTED_SHAPES
    return path


@pytest.fixture(scope="module")
def lossless_tiff(slide) -> Path:
    return write_ome_tiff(slide, slide.parent / "slide-zlib.ome.tif", compression="zlib")


@pytest.fixture(scope="module")
def jpeg_tiff(slide) -> Path:
    return write_ome_tiff(slide, slide.parent / "slide-jpeg.ome.tif")


def test_pyramid_levels_are_2x2_means_down_to_256(slide, pixels):
    assert level_shapes(slide) == EXPECTED_SHAPES
    assert np.array_equal(open_level(slide, 0)[:], pixels)
    for level in range(1, len(EXPECTED_SHAPES)):
        above = open_level(slide, level - 1)[:]
        np.testing.assert_array_equal(open_level(slide, level)[:], reference_half(above))
        assert open_level(slide, level).chunks == (3, CHUNK, CHUNK)
    # the odd edge: the last row of level 1 averages the single last row of level 0
    assert open_level(slide, 1)[0, -1, 0] == np.floor(pixels[0, -1, 0:2].mean() + 0.5)


def test_pyramid_with_dask_tasks_matches_in_process(slide, tmp_path, pixels):
    from distributed import Client, LocalCluster

    path = tmp_path / "dask.ome.zarr"
    meta = SlideMetadata(width=WIDTH, height=HEIGHT, mpp=MPP, provenance=PROVENANCE)
    fill_chunk_by_chunk(create_ome_zarr(path, meta, chunk=CHUNK), pixels)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        assert build_pyramid(path, client=client) == EXPECTED_SHAPES
    for level in range(len(EXPECTED_SHAPES)):
        assert np.array_equal(open_level(path, level)[:], open_level(slide, level)[:])


def test_ome_zarr_validates_as_ngff_04_bioformats2raw(slide):
    model = BioFormats2Raw.from_zarr(zarr.open_group(str(slide), mode="r", zarr_format=2))
    assert model.image_paths == ["0"]
    multiscale = model.images["0"].attributes.multiscales[0]
    assert [(a.name, a.type, a.unit) for a in multiscale.axes] == [
        ("c", "channel", None),
        ("y", "space", "micrometer"),
        ("x", "space", "micrometer"),
    ]
    scales = [d.coordinateTransformations[0].scale for d in multiscale.datasets]
    assert scales == [[1.0, MPP * 2**lvl, MPP * 2**lvl] for lvl in range(len(EXPECTED_SHAPES))]
    assert [c.label for c in model.images["0"].attributes.omero.channels] == [
        "Red",
        "Green",
        "Blue",
    ]

    for meta_file in [".zgroup", "0/.zgroup", "OME/.zgroup", "0/0/.zarray", "0/2/.zarray"]:
        assert json.loads((slide / meta_file).read_text())["zarr_format"] == 2
    assert json.loads((slide / ".zattrs").read_text()) == {"bioformats2raw.layout": 3}
    assert json.loads((slide / "OME/.zattrs").read_text()) == {"series": ["0"]}

    raw = (slide / "OME" / "METADATA.ome.xml").read_bytes()
    assert 'PhysicalSizeXUnit="µm"'.encode() in raw and b"&#" not in raw  # UTF-8, no references
    ome = ome_types.from_xml(slide / "OME" / "METADATA.ome.xml", validate=True)
    px = ome.images[0].pixels
    assert (px.size_x, px.size_y, px.size_c, px.type.value) == (WIDTH, HEIGHT, 3, "uint8")
    assert (px.physical_size_x, px.physical_size_y, px.physical_size_x_unit.value) == (
        MPP,
        MPP,
        "µm",
    )
    assert_objective(ome, 40.0)
    assert [(c.name, c.samples_per_pixel, c.color.as_rgb_tuple()) for c in px.channels] == [
        ("Red", 1, (255, 0, 0)),
        ("Green", 1, (0, 255, 0)),
        ("Blue", 1, (0, 0, 255)),
    ]


def assert_objective(ome: ome_types.OME, magnification: float) -> None:
    """The Image links (ObjectiveSettings) to an Objective with this NominalMagnification."""
    objectives = {o.id: o for o in ome.instruments[0].objectives}
    image = ome.images[0]
    assert image.instrument_ref.id == ome.instruments[0].id
    assert objectives[image.objective_settings.id].nominal_magnification == magnification


def test_nominal_magnification_follows_the_pixel_size():
    assert [nominal_magnification(mpp) for mpp in (1.0, 0.5, 0.499, 0.25, 0.2525, 4.0)] == [
        10.0,
        20.0,
        20.0,
        40.0,
        40.0,
        2.5,
    ]


def test_lossless_ome_tiff_validates_and_matches_the_zarr(slide, lossless_tiff):
    ome = ome_types.from_tiff(lossless_tiff, validate=True)
    px = ome.images[0].pixels
    assert (px.size_x, px.size_y, px.physical_size_x, px.physical_size_y) == (
        WIDTH,
        HEIGHT,
        MPP,
        MPP,
    )
    assert px.physical_size_x_unit.value == "µm"
    assert [c.samples_per_pixel for c in px.channels] == [3]
    assert_objective(ome, 40.0)

    with tifffile.TiffFile(lossless_tiff) as tif:
        assert tif.is_bigtiff and tif.is_ome
        page = tif.pages[0]
        tag = page.tags["ImageDescription"]
        tif.filehandle.seek(tag.valueoffset)
        description = tif.filehandle.read(tag.count)  # the raw bytes: UTF-8, as Bio-Formats reads
        assert 'PhysicalSizeXUnit="µm"'.encode() in description and b"&#" not in description
        assert len(page.subifds) == len(EXPECTED_SHAPES) - 1
        series = tif.series[0]
        assert [lvl.shape for lvl in series.levels] == [(h, w, 3) for h, w in EXPECTED_SHAPES]
        for level, tiff_level in enumerate(series.levels):
            lvl_page = tiff_level.keyframe
            assert (lvl_page.tilewidth, lvl_page.tilelength) == (512, 512)
            assert lvl_page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
            assert lvl_page.photometric == tifffile.PHOTOMETRIC.RGB
            stored = np.moveaxis(open_level(slide, level)[:], 0, -1)
            assert np.array_equal(tiff_level.asarray(), stored)
        x_res = page.tags["XResolution"].value
        assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
        assert x_res[0] / x_res[1] == pytest.approx(1e4 / MPP)


def test_jpeg_ome_tiff_is_ycbcr_and_close(slide, jpeg_tiff):
    ome_types.from_tiff(jpeg_tiff, validate=True)
    with tifffile.TiffFile(jpeg_tiff) as tif:
        levels = tif.series[0].levels
        assert len(levels) == len(EXPECTED_SHAPES)
        for level, tiff_level in enumerate(levels):
            page = tiff_level.keyframe
            assert page.compression == tifffile.COMPRESSION.JPEG
            assert page.photometric == tifffile.PHOTOMETRIC.YCBCR
            error = np.abs(
                tiff_level.asarray().astype(np.int16)
                - np.moveaxis(open_level(slide, level)[:], 0, -1)
            )
            assert error.mean() < 3.0, (level, error.mean())


def large_image_region(source, frame: int = 0) -> np.ndarray:
    import large_image

    region, _ = source.getRegion(
        region={"left": 300, "top": 200, "width": 400, "height": 300},
        format=large_image.constants.TILE_FORMAT_NUMPY,
        frame=frame,
    )
    return region


def test_large_image_opens_the_ome_tiff(lossless_tiff, pixels):
    import large_image_source_ometiff

    source = large_image_source_ometiff.open(str(lossless_tiff))
    meta = source.getMetadata()
    assert (meta["sizeX"], meta["sizeY"], meta["tileWidth"]) == (WIDTH, HEIGHT, 512)
    assert meta["levels"] >= 2 and meta["mm_x"] == pytest.approx(MPP / 1000)
    region = large_image_region(source)
    assert np.array_equal(region[..., :3], np.moveaxis(pixels[:, 200:500, 300:700], 0, -1))


@pytest.mark.filterwarnings("ignore:Object at METADATA.ome.xml is not recognized")
def test_large_image_opens_the_ome_zarr(slide, pixels, monkeypatch):
    # large-image-source-zarr >= 1.30.6 pins zarr<3; 1.30.5 (the last without the pin) still
    # names three zarr-2 spellings. Give it those names for this test; its reader is unchanged.
    monkeypatch.setattr(zarr.core, "Array", zarr.Array, raising=False)
    monkeypatch.setattr(zarr, "hierarchy", types.SimpleNamespace(Group=zarr.Group), raising=False)
    monkeypatch.setattr(
        zarr.Group, "values", lambda group: [m for _, m in group.members()], raising=False
    )
    import large_image_source_zarr

    source = large_image_source_zarr.open(str(slide / ".zattrs"), noCache=True)
    meta = source.getMetadata()
    assert (meta["sizeX"], meta["sizeY"], meta["levels"]) == (WIDTH, HEIGHT, 3)
    assert meta["channels"] == ["Red", "Green", "Blue"]
    assert meta["mm_x"] == pytest.approx(MPP / 1000)
    for channel in range(3):
        region = large_image_region(source, frame=channel)
        assert np.array_equal(region[..., 0], pixels[channel, 200:500, 300:700])


def test_provenance_in_both_files(slide, jpeg_tiff):
    for path in (slide, jpeg_tiff):
        provenance = read_provenance(path)
        assert provenance == {**PROVENANCE, "synthetic": True, "gigasynth_version": "0.1.0"}
        meta = read_metadata(path)
        assert (meta.width, meta.height, meta.mpp) == (WIDTH, HEIGHT, MPP)
    ome = ome_types.from_tiff(jpeg_tiff)
    pairs = {m.k: m.value for m in ome.structured_annotations.map_annotations[0].value.ms}
    assert pairs["seed"] == "1234" and pairs["synthetic"] == "true"
    assert pairs["checkpoint_sha256"] == "5e" * 32 and pairs["sampler"] == "ddim"


def png_chunks(png: Path) -> dict[bytes, list[bytes]]:
    """The raw chunks of a PNG file by type (read from the bytes, not through Pillow)."""
    data, chunks, at = png.read_bytes(), {}, 8
    while at < len(data):
        length, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8]
        chunks.setdefault(kind, []).append(data[at + 8 : at + 8 + length])
        at += 12 + length
    return chunks


def test_preview_is_a_small_png_of_the_slide(slide, pixels, tmp_path):
    png = write_preview(slide, tmp_path / "preview.png", max_side=300)
    with Image.open(png) as im:
        assert im.mode == "RGB" and max(im.size) == 300 and im.size[0] > im.size[1]
        size = im.size
        small = np.asarray(im).astype(np.float32)
    assert abs(small.mean() - pixels.mean()) < 2.0

    chunks = png_chunks(png)
    (phys,) = chunks[b"pHYs"]
    per_metre = (int.from_bytes(phys[:4], "big"), int.from_bytes(phys[4:8], "big"))
    assert phys[8] == 1  # unit: metre
    preview_mpp = (MPP * WIDTH / size[0], MPP * HEIGHT / size[1])  # about 0.83 µm/px
    assert per_metre == pytest.approx([1e6 / mpp for mpp in preview_mpp], abs=1)
    text = dict(chunk.split(b"\0", 1) for chunk in chunks[b"tEXt"])
    assert b"Synthetic" in text[b"Comment"] and b"no real patient" in text[b"Comment"]
    assert json.loads(text[b"gigasynth"]) == {
        **PROVENANCE,
        "synthetic": True,
        "gigasynth_version": "0.1.0",
    }


def test_bounded_memory_on_a_large_sparse_level(tmp_path):
    """A 4096 x 8192 level (100 MB in RAM) costs a few MB to pyramid and to write as OME-TIFF:
    both read one chunk- or tile-sized block at a time (unwritten chunks read as fill)."""
    path = tmp_path / "sparse.ome.zarr"
    meta = SlideMetadata(width=8192, height=4096, mpp=MPP, provenance=PROVENANCE)
    level0 = create_ome_zarr(path, meta, chunk=512)
    level0[:, 1024:1536, 4096:4608] = 200
    whole_level = 3 * 4096 * 8192
    tracemalloc.start()
    try:
        build_pyramid(path)
        _, pyramid_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        write_ome_tiff(path, tmp_path / "sparse.ome.tif")
        _, tiff_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pyramid_peak < whole_level / 10, pyramid_peak
    assert tiff_peak < whole_level / 4, tiff_peak
    assert level_shapes(path)[-1] == (128, 256)
    assert open_level(path, 1)[0, 600, 2200] == 200


def test_bad_input_is_one_line_error(slide, tmp_path):
    missing = tmp_path / "nope.ome.zarr"
    cases = [
        (lambda: open_level(missing, 0), "not found"),
        (lambda: build_pyramid(missing), "not found"),
        (lambda: write_ome_tiff(missing, tmp_path / "x.ome.tif"), "not found"),
        (lambda: read_provenance(missing), "not found"),
        (lambda: write_ome_tiff(slide, tmp_path / "x.ome.tif", compression="lzw"), "lzw"),
        (lambda: write_ome_tiff(slide, tmp_path / "x.ome.tif", quality=0), "quality"),
        (lambda: open_level(slide, 3), "out of range"),
        (lambda: open_level(slide, -1), "out of range"),
        (lambda: create_ome_zarr(slide, read_metadata(slide)), "already exists"),
        (lambda: write_ome_tiff(slide, tmp_path), "folder"),
        (lambda: SlideMetadata(width=0, height=5, mpp=0.5, provenance={}), "width"),
        (lambda: SlideMetadata(width=5, height=5, mpp="0.5", provenance={}), "mpp"),
        (lambda: SlideMetadata(width=5, height=5, mpp=0.5, provenance={"x": object()}), "JSON"),
    ]
    for call, fragment in cases:
        with pytest.raises(GigasynthError) as info:
            call()
        message = str(info.value)
        assert fragment in message and "\n" not in message, message
    assert not (tmp_path / "x.ome.tif").exists()
    numpy_sized = SlideMetadata(
        width=np.int64(5), height=np.int32(7), mpp=np.float32(0.5), provenance={}
    )
    assert (type(numpy_sized.width), type(numpy_sized.mpp)) == (int, float)


def write_slide(path: Path, pixels: np.ndarray, pyramid: bool = True) -> Path:
    """An OME-Zarr of (3, H, W) `pixels` written by gigasynth's writers."""
    meta = SlideMetadata(
        width=pixels.shape[2], height=pixels.shape[1], mpp=MPP, provenance=PROVENANCE
    )
    fill_chunk_by_chunk(create_ome_zarr(path, meta, chunk=CHUNK), pixels)
    if pyramid:
        build_pyramid(path)
    return path


def continued_pyramid(level: np.ndarray, count: int) -> list[np.ndarray]:
    """`level` and the `count - 1` levels below it, each the reference 2x2 mean of the last."""
    levels = [level]
    while len(levels) < count:
        levels.append(reference_half(levels[-1]))
    return levels


def deepzoom_levels(slide: Path) -> list[np.ndarray]:
    """What each DeepZoom level of `slide` must show, (H, W, 3), level 0 (1 x 1) first: the
    stored levels read with zarr, continued by the reference 2x2 mean below the coarsest."""
    stored = [open_level(slide, level)[:] for level in range(len(level_shapes(slide)))]
    count = math.ceil(math.log2(max(stored[0].shape[1:]))) + 1
    below = continued_pyramid(stored[-1], count - len(stored) + 1)[1:]
    return [np.moveaxis(a, 0, -1) for a in reversed(stored + below)]


def test_reader_reads_both_formats(slide, lossless_tiff, jpeg_tiff, pixels):
    with (
        open_slide(slide) as zarr_slide,
        open_slide(lossless_tiff) as tiff_slide,
        open_slide(jpeg_tiff) as jpeg_slide,
    ):
        for reader in (zarr_slide, tiff_slide, jpeg_slide):
            assert reader.levels == tuple(EXPECTED_SHAPES)
            assert (reader.width, reader.height, reader.mpp) == (WIDTH, HEIGHT, MPP)
            assert reader.metadata.provenance["seed"] == PROVENANCE["seed"]
        for level in range(len(EXPECTED_SHAPES)):
            stored = np.moveaxis(open_level(slide, level)[:], 0, -1)
            for reader in (zarr_slide, tiff_slide):
                assert np.array_equal(
                    reader.read_region(level, 0, 0, *EXPECTED_SHAPES[level]), stored
                )
        region = zarr_slide.read_region(0, 700, 900, 77, 101)  # reaches both far edges
        assert np.array_equal(region, np.moveaxis(pixels[:, 700:, 900:], 0, -1))
        assert np.array_equal(tiff_slide.read_region(0, 700, 900, 77, 101), region)
        lossy = jpeg_slide.read_region(1, 5, 300, 200, 201).astype(int)
        assert (
            np.abs(lossy - np.moveaxis(open_level(slide, 1)[:, 5:205, 300:501], 0, -1)).mean() < 4
        )


def test_deepzoom_geometry_and_dzi(slide):
    dz = DeepZoomGenerator(open_slide(slide))
    top = math.ceil(math.log2(max(WIDTH, HEIGHT)))
    assert dz.level_count == top + 1
    assert dz.level_dimensions == tuple(
        (math.ceil(WIDTH / 2 ** (top - lvl)), math.ceil(HEIGHT / 2 ** (top - lvl)))
        for lvl in range(top + 1)
    )
    assert dz.level_dimensions[0] == (1, 1) and dz.level_dimensions[-1] == (WIDTH, HEIGHT)
    assert dz.level_tiles == tuple(
        (math.ceil(w / 254), math.ceil(h / 254)) for w, h in dz.level_dimensions
    )
    assert dz.tile_count == sum(c * r for c, r in dz.level_tiles)
    # overlap of 1 px on every side that has a neighbour, clipped at the level's edges
    assert dz.get_tile_bounds(top, (0, 0)) == (0, 0, 255, 255)
    assert dz.get_tile_bounds(top, (1, 2)) == (253, 507, 509, 763)
    assert dz.get_tile_bounds(top, (3, 3)) == (761, 761, WIDTH, HEIGHT)
    assert dz.get_tile_dimensions(top - 1, (1, 1)) == (501 - 253, 389 - 253)
    root = ET.fromstring(dz.get_dzi())
    ns = "{http://schemas.microsoft.com/deepzoom/2008}"
    assert root.tag == f"{ns}Image"
    assert (root.get("Format"), root.get("TileSize"), root.get("Overlap")) == ("jpeg", "254", "1")
    size = root.find(f"{ns}Size")
    assert (size.get("Width"), size.get("Height")) == (str(WIDTH), str(HEIGHT))
    assert ET.fromstring(DeepZoomGenerator(open_slide(slide), 510, 0).get_dzi("png")).attrib == {
        "Format": "png",
        "TileSize": "510",
        "Overlap": "0",
    }


@pytest.mark.parametrize(
    "size, levels", [((1, 1), 1), ((1024, 3), 11), ((1025, 3), 12), ((3, 17), 6)]
)
def test_deepzoom_level_count_at_powers_of_two(tmp_path, size, levels):
    width, height = size
    path = write_slide(tmp_path / "s.ome.zarr", np.full((3, height, width), 9, np.uint8))
    dz = DeepZoomGenerator(open_slide(path))
    assert dz.level_count == levels
    assert dz.level_dimensions[-1] == size and dz.level_dimensions[0] == (1, 1)
    assert np.array_equal(
        np.asarray(dz.get_tile(levels - 1, (0, 0))),
        np.full((min(height, 255), min(width, 255), 3), 9, np.uint8),
    )


def every_tile(dz: DeepZoomGenerator):
    for level, (cols, rows) in enumerate(dz.level_tiles):
        for col, row in product(range(cols), range(rows)):
            yield level, (col, row)


def test_deepzoom_tiles_are_slices_of_the_pyramid(slide, lossless_tiff):
    """Every DeepZoom tile, from the OME-Zarr and from the lossless OME-TIFF, equals its
    bounds' slice of the matching pyramid level; below the stored levels, of the pyramid
    continued by 2x2 means."""
    expected = deepzoom_levels(slide)
    for path in (slide, lossless_tiff):
        with open_slide(path) as reader:
            dz = DeepZoomGenerator(reader)
            assert dz.level_count == len(expected)
            for level, address in every_tile(dz):
                x0, y0, x1, y1 = dz.get_tile_bounds(level, address)
                tile = np.asarray(dz.get_tile(level, address))
                assert np.array_equal(tile, expected[level][y0:y1, x0:x1]), (path, level, address)
            png = dz.get_tile_bytes(9, (1, 0), format="png")
            assert np.array_equal(
                np.asarray(Image.open(io.BytesIO(png))), np.asarray(dz.get_tile(9, (1, 0)))
            )
            jpeg = Image.open(io.BytesIO(dz.get_tile_bytes(10, (2, 1))))
            assert jpeg.format == "JPEG" and jpeg.size == dz.get_tile_dimensions(10, (2, 1))
            assert np.abs(np.asarray(jpeg).astype(int) - expected[10][253:509, 507:763]).mean() < 6


def test_deepzoom_without_a_pyramid_continues_from_level_0(tmp_path, pixels):
    """A slide whose pyramid was never built (one stored level) still gives every DeepZoom
    level, each the 2x2-mean pyramid of level 0."""
    path = write_slide(tmp_path / "flat.ome.zarr", pixels[:, :300, :500], pyramid=False)
    assert level_shapes(path) == [(300, 500)]
    expected = deepzoom_levels(path)
    dz = DeepZoomGenerator(open_slide(path))
    for level, address in every_tile(dz):
        x0, y0, x1, y1 = dz.get_tile_bounds(level, address)
        assert np.array_equal(
            np.asarray(dz.get_tile(level, address)), expected[level][y0:y1, x0:x1]
        ), (level, address)


def test_bad_slide_and_tile_addresses_are_one_line_errors(slide, tmp_path):
    reader = open_slide(slide)
    dz = DeepZoomGenerator(reader)
    (tmp_path / "notes.txt").write_text("not a slide")
    (tmp_path / "empty.ome.zarr").mkdir()
    cases = [
        (lambda: open_slide(tmp_path / "nope.ome.zarr"), "slide not found"),
        (lambda: open_slide(tmp_path / "notes.txt"), "cannot read TIFF"),
        (lambda: open_slide(tmp_path / "empty.ome.zarr"), "no pyramid level"),
        (lambda: reader.read_region(3, 0, 0, 1, 1), "level 3 out of range"),
        (lambda: reader.read_region(0, 700, 0, 78, 1), "outside level 0 (1001x777 px)"),
        (lambda: reader.read_region(0, -1, 0, 1, 1), "outside level 0"),
        (lambda: reader.read_region(0, 0, 0, 1.5, 1), "h must be an integer"),
        (lambda: dz.get_tile(11, (0, 0)), "DeepZoom level 11 is outside the pyramid (0..10)"),
        (lambda: dz.get_tile(-1, (0, 0)), "DeepZoom level -1 is outside the pyramid"),
        (lambda: dz.get_tile(10, (4, 0)), "tile 4_0 is outside level 10 (4 columns x 4 rows)"),
        (lambda: dz.get_tile(10, (0, 4)), "tile 0_4 is outside level 10"),
        (lambda: dz.get_tile_bounds(8, (1, 0)), "tile 1_0 is outside level 8 (1 columns x 1"),
        (lambda: dz.get_tile(10, (0, -1)), "tile 0_-1 is outside level 10"),
        (lambda: dz.get_tile(10, 3), "address is (column, row)"),
        (lambda: dz.get_tile(10, (0, 0, 0)), "address is (column, row)"),
        (lambda: dz.get_tile("10", (0, 0)), "DeepZoom level must be an integer"),
        (lambda: dz.get_tile(True, (0, 0)), "DeepZoom level must be an integer"),
        (lambda: dz.get_tile(10, (0.0, 0)), "DeepZoom column must be an integer"),
        (lambda: dz.get_dzi("gif"), "format must be one of jpeg, png"),
        (lambda: dz.get_tile_bytes(10, (0, 0), quality=0), "JPEG quality must be"),
        (lambda: DeepZoomGenerator(reader, dz_tile_size=0), "DeepZoom tile size"),
        (lambda: DeepZoomGenerator(reader, dz_overlap=-1), "DeepZoom overlap"),
    ]
    for call, fragment in cases:
        with pytest.raises(GigasynthError) as info:
            call()
        message = str(info.value)
        assert fragment in message and "\n" not in message, message
    # numpy integers are integers
    assert dz.get_tile_bounds(np.int64(10), (np.int32(1), np.uint8(2))) == (253, 507, 509, 763)
