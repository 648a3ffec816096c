"""Image files read as their sender meant them (gigasynth.decoding), for the CLI's --layout
as for the service's uploads: EXIF orientation, 16-bit scaled, alpha as glass, float and
CMYK refused, one frame only, truncated or bomb files refused from their header, and a
decode's memory within what its header announced (measured in a child process)."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from gigasynth.cascade import load_cascade
from gigasynth.cascade.layout import load_layout
from gigasynth.cli import main
from gigasynth.decoding import check_image, read_header, read_image
from gigasynth.errors import GigasynthError
from gigasynth.io import open_level, read_label
from tests.cascade_fixtures import write_cascade, write_mask_cascade

LIMIT = 1 << 26


def encoded(im: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def refusal(source: bytes | Path, fragment: str, read=read_image) -> str:
    with pytest.raises(GigasynthError) as info:
        read(source, "the layout", LIMIT)
    message = str(info.value)
    assert fragment in message and "\n" not in message, message
    return message


def exif(orientation: int) -> bytes:
    tags = Image.Exif()
    tags[0x0112] = orientation
    return tags.tobytes()


def bomb_jpeg(side: int = 8000) -> bytes:
    """A JPEG whose header claims side x side px, cut to its first 600 bytes and an end
    marker (libjpeg fills the rest grey without a word: the attack of issue 27)."""
    return encoded(Image.new("L", (side, side), 200), "JPEG")[:600] + b"\xff\xd9"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF"])
def test_exif_orientation_is_applied(fmt):
    rgb = np.random.default_rng(0).integers(0, 256, (32, 64, 3), np.uint8)
    for orientation in range(1, 9):
        data = encoded(Image.fromarray(rgb), fmt, exif=exif(orientation))
        with Image.open(io.BytesIO(data)) as im:
            shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        got = read_image(data, "the layout", LIMIT)
        assert np.array_equal(got, shown), (fmt, orientation)
        header = read_header(data, "the layout", LIMIT)
        assert (header.width, header.height) == (got.shape[1], got.shape[0])
        if orientation >= 5:
            assert got.shape[:2] == (64, 32)  # shown taller than wide


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_scaled_not_clipped(fmt):
    ramp = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    got = read_image(encoded(Image.fromarray(ramp), fmt), "the layout", LIMIT)
    expected = np.round(ramp / 257).astype(np.uint8)
    assert np.array_equal(got[..., 0], expected) and (got[..., 1] == got[..., 0]).all()
    assert (got[..., 0] >= 128).mean() == pytest.approx(0.5, abs=0.01)  # half tissue


def test_16_bit_mask_keeps_its_tissue_for_the_cli(tmp_path):
    """The CLI's --layout reads through load_layout: a 16-bit ramp mask is half tissue."""
    root = write_mask_cascade(tmp_path / "casc")
    ramp = (np.arange(64 * 64, dtype=np.uint32) * 65535 // (64 * 64 - 1)).reshape(64, 64)
    path = tmp_path / "mask16.png"
    Image.fromarray(ramp.astype(np.uint16)).save(path)
    layout = load_layout(path, load_cascade(root))
    assert layout.kind == "mask" and layout.pixels.mean() == pytest.approx(0.5, abs=0.01)


def test_alpha_is_glass():
    # A colour image: transparent pixels are white glass, half-transparent ones blended.
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., :3] = (180, 60, 150)
    rgba[..., 3] = 255
    rgba[0, :, 3] = 0
    rgba[1, :, 3] = 128
    got = read_image(encoded(Image.fromarray(rgba), "PNG"), "the layout", LIMIT)
    assert (got[0] == 255).all() and (got[2:] == (180, 60, 150)).all()
    blend = (np.array([180, 60, 150]) * 128 + 255 * 127 + 127) // 255
    assert (got[1] == blend).all()
    # A grey mask (light = tissue): transparent light pixels are no tissue (black).
    la = np.zeros((4, 6, 2), np.uint8)
    la[..., 0] = 255
    la[:2, :, 1] = 255
    got = read_image(encoded(Image.fromarray(la, "LA"), "PNG"), "the layout", LIMIT)
    assert (got[:2] == 255).all() and (got[2:] == 0).all()
    # A palette image's transparent colour counts the same way.
    pal = Image.fromarray(np.array([[0, 1], [1, 1]], np.uint8), "P")
    pal.putpalette([90, 20, 30, 200, 10, 40])
    got = read_image(encoded(pal, "PNG", transparency=0), "the layout", LIMIT)
    assert (got[0, 0] == 255).all() and (got[1, 1] == (200, 10, 40)).all()


def test_modes_without_a_white_are_refused():
    refusal(encoded(Image.fromarray(np.ones((8, 8), np.float32)), "TIFF"), "floating-point")
    refusal(encoded(Image.new("I", (8, 8), 5), "TIFF"), "32-bit integer")
    refusal(encoded(Image.new("CMYK", (8, 8)), "JPEG"), "CMYK")


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "GIF"])
def test_several_frames_are_refused(fmt):
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue", "green")]
    data = encoded(frames[0], fmt, save_all=True, append_images=frames[1:])
    refusal(data, "3 frames", read=read_header)


def test_truncated_and_bomb_files_are_refused_from_the_header():
    jpeg_bomb = bomb_jpeg()
    png = encoded(Image.new("L", (8000, 8000)), "PNG")  # deflate: at least 62 KB
    tiff = encoded(Image.new("RGB", (100, 100)), "TIFF")  # uncompressed
    start = time.perf_counter()
    refusal(jpeg_bomb, "cannot hold the 8000x8000 px", read=check_image)
    refusal(png[:2000] + png[-12:], "cannot hold the 8000x8000 px", read=check_image)
    refusal(tiff[: len(tiff) // 2], "cannot hold", read=check_image)
    assert time.perf_counter() - start < 0.5  # refused from the header: nothing decoded
    jpeg = encoded(Image.new("RGB", (512, 512), (10, 200, 30)), "JPEG")
    refusal(jpeg[: len(jpeg) // 2], "truncated", read=check_image)  # no end marker
    refusal(png[: len(png) // 2], "truncated", read=read_image)
    refusal(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20, "cannot read the layout")
    with pytest.raises(GigasynthError, match="too large: 9000x8000"):
        read_header(encoded(Image.new("1", (9000, 8000)), "PNG"), "the layout", 8000 * 8000)


_PEAK = """
import sys
from gigasynth.decoding import read_header, read_image

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

data = open(sys.argv[1], "rb").read()
header = read_header(data, "x", 1 << 26)
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) restarts from now
before = rss("VmRSS")
rgb = read_image(data, "x", 1 << 26)
print(rss("VmHWM") - before, header.decode_bytes)
"""


@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux's resettable peak RSS"
)
@pytest.mark.parametrize("mode", ["RGBA", "RGB", "I;16"])
def test_decode_stays_within_its_announced_memory(tmp_path, mode):
    """The budget's premise: a decode's peak growth (VmHWM of a fresh process) is at most
    `decode_bytes`: an oriented RGBA image (the dearest path), RGB noise, 16-bit grey."""
    side = 3000
    if mode == "RGBA":
        im = Image.new("RGBA", (side, side), (200, 40, 90, 128))
        data = encoded(im, "PNG", exif=exif(6))
    elif mode == "RGB":
        noise = np.random.default_rng(0).integers(0, 256, (side, side, 3), np.uint8)
        data = encoded(Image.fromarray(noise), "PNG", compress_level=1)
    else:
        data = encoded(Image.new("I;16", (side, side), 40000), "PNG")
    path = tmp_path / "image.png"
    path.write_bytes(data)
    out = subprocess.run(
        [sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    grown, announced = map(int, out.stdout.split())
    assert 0 < grown <= announced, (grown, announced)


def _synth_args(root: Path, layout: Path, out: Path) -> list[str]:
    return [
        *("synth", "--checkpoint", str(root), "--workers", "1", "--tile", "0"),
        *("--out", str(out), "--layout", str(layout)),
    ]


def test_cli_layout_follows_the_rules(tmp_path, capsys):
    """`gigasynth synth --layout`: an EXIF-rotated RGBA image makes a slide as tall as
    shown, with no tissue under its transparent (glass) part (a real run, in a process of
    its own); refused files are one line and leave no output (in this process: the
    refusal comes before any work)."""
    root, _, _ = write_cascade(tmp_path / "casc")
    rgba = np.zeros((4, 5, 4), np.uint8)  # stored 5 wide, 4 tall; shown 4 wide, 5 tall
    rgba[..., :3] = (150, 40, 120)
    rgba[..., 3] = 255
    rgba[:, 0, 3] = 0  # the stored left column (the shown top row, orientation 6)
    layout = tmp_path / "layout.png"
    Image.fromarray(rgba).save(layout, exif=exif(6))
    out = tmp_path / "out.ome.zarr"
    cmd = [sys.executable, "-m", "gigasynth", *_synth_args(root, layout, out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert open_level(out, 0, mode="r").shape == (3, 30, 24)
    tissue, scale = read_label(out, "tissue")  # the layout's, as shown
    assert tissue.shape == (5, 4) and scale == 6
    assert not tissue[0].any() and tissue[1:].all()
    pages = [Image.new("RGB", (5, 4)), Image.new("RGB", (5, 4))]
    bad = {
        "float.tif": (encoded(Image.fromarray(np.ones((4, 5), np.float32)), "TIFF"), "float"),
        "bomb.jpg": (bomb_jpeg(), "cannot hold"),
        "pages.tif": (encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:]), "2 f"),
    }
    capsys.readouterr()
    for name, (data, fragment) in bad.items():
        (tmp_path / name).write_bytes(data)
        assert main(_synth_args(root, tmp_path / name, tmp_path / f"{name}.ome.zarr")) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and fragment in err, err
        assert not (tmp_path / f"{name}.ome.zarr").exists()
