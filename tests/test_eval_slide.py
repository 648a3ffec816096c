"""Slide-scale evaluation on the sample slide's held-out test region.

The real side is always the top half of the test region; "real" fakes are read from its
bottom half (a disjoint sub-region of the same test region), through openslide, at the
models' downsample 2. Inception features of 299 px inputs are the main cost.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import openslide
import pytest
import torch
import torch.nn.functional as F

from gigasynth.cli import main
from gigasynth.data.regions import Region, held_out_split
from gigasynth.errors import GigasynthError
from gigasynth.eval.inception import inception_path
from gigasynth.eval.inputs import SlideRegions, slide_mpp
from gigasynth.eval.report import report_size
from gigasynth.eval.slide import evaluate_slides
from gigasynth.images import write_png

from .conftest import SLIDE

DOWNSAMPLE = 2  # the models' pixel size: 0.998 µm/px on the sample slide
SCALES = (1, 2, 4)
N = 16  # crops per side and scale
CROP = 64  # 64 px crops mix tissue and background more evenly than 32 px: steadier KID
BAND_LIMITS = (0.67, 1.5)  # the targets: real-vs-real band energy ratios stay within these


def _halves() -> tuple[Region, Region]:
    """The top and bottom halves of the sample slide's test region (level-0 px)."""
    slide = openslide.OpenSlide(str(SLIDE))
    test = held_out_split(*slide.dimensions, slide_mpp(slide))["test"]
    middle = (test.y0 + test.y1) // 2
    return (Region(test.x0, test.y0, test.x1, middle), Region(test.x0, middle, test.x1, test.y1))


@pytest.fixture(scope="module")
def halves() -> tuple[Region, Region]:
    return _halves()


@pytest.fixture(scope="module")
def bottom(halves) -> np.ndarray:
    """The bottom half of the test region at downsample 2, as an (H, W, 3) array."""
    regions = SlideRegions(SLIDE, DOWNSAMPLE, str(halves[1]))
    return np.array(regions.read(0, 0, regions.height, regions.width))


@pytest.fixture(scope="module")
def inception() -> None:
    try:
        inception_path()
    except GigasynthError as exc:
        pytest.skip(str(exc))


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    r = int(3 * sigma)
    k = torch.exp(-(torch.arange(-r, r + 1.0) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    kernel = (k[:, None] * k[None, :]).expand(3, 1, 2 * r + 1, 2 * r + 1)
    x = F.conv2d(F.pad(x, (r, r, r, r), mode="replicate"), kernel, groups=3)
    return x.round().clamp(0, 255).byte()[0].permute(1, 2, 0).numpy()


def _noise(image: np.ndarray, seed: int) -> np.ndarray:
    """I.i.d. Gaussian pixels with the image's per-channel mean and std: colour, no structure."""
    pixels = image.reshape(-1, 3).astype(np.float64)
    noise = np.random.default_rng(seed).normal(pixels.mean(0), pixels.std(0), image.shape)
    return np.clip(np.round(noise), 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_kid_ranks_real_below_blurred_below_noise_at_each_scale(halves, bottom, inception):
    """KID of top half vs bottom half < vs bottom blurred < vs colour-matched noise, per scale.

    One `evaluate_slides` call: the real crops' features are computed once per scale.
    Blur sigma 8 px at 1 µm/px is still 2 px at scale 4. Sized from 24 Inception features
    per set and scale: drawing 16 of them, the ranking held at all three scales in 199 of
    200 draws (sigma 4: 195; 32 px crops: 132), so n = 16 here.
    """
    top = str(halves[0])
    fakes = {"real": bottom, "blurred": _blur(bottom, 8.0), "noise": _noise(bottom, 1)}
    results = dict(
        zip(
            fakes,
            evaluate_slides(
                SLIDE,
                list(fakes.values()),
                scales=SCALES,
                n=N,
                crop=CROP,
                seed=0,
                real_region=top,
                real_downsample=DOWNSAMPLE,
                bootstrap=100,
            ),
            strict=True,
        )
    )
    for index, scale in enumerate(SCALES):
        kid = {name: r.scales[index].kid for name, r in results.items()}
        assert all(
            r.scales[index].scale == scale and r.scales[index].n == N for r in results.values()
        )
        assert kid["real"] < kid["blurred"] < kid["noise"], (scale, kid)
        s = results["real"].scales[index]
        assert s.kid_low <= s.kid <= s.kid_high, s
        assert s.real_field == (bottom.shape[1] // scale, (halves[0].height // 2) // scale)
    real = results["real"]
    assert real.real_region == top and real.real_downsample == DOWNSAMPLE
    assert len(real.bands) >= 4 and real.bands[0].low_px == 1  # 1-2 px up to 1/8 of the field
    ratios = [b.ratio for b in real.bands]
    assert all(BAND_LIMITS[0] <= r <= BAND_LIMITS[1] for r in ratios), ratios
    assert results["blurred"].bands[0].ratio < BAND_LIMITS[0]  # the bands see the blur
    cr, cf = real.colour_real, real.colour_fake
    assert 0.3 < cr.background_fraction < 0.8 and 0.3 < cf.background_fraction < 0.8, (cr, cf)
    assert cr.haematoxylin_mean > 0 and cr.eosin_mean > 0
    assert results["noise"].colour_fake.background_fraction < cf.background_fraction


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _write_zarr(path: Path, image: np.ndarray, mpp: float) -> Path:
    from gigasynth.io.metadata import SlideMetadata
    from gigasynth.io.omezarr import create_ome_zarr

    meta = SlideMetadata(
        width=image.shape[1],
        height=image.shape[0],
        mpp=mpp,
        provenance={"test": "bottom half of the test region"},
    )
    level0 = create_ome_zarr(path, meta, chunk=128)
    level0[:] = np.moveaxis(image, -1, 0)
    return path


@pytest.mark.slow
def test_cli_slide_vs_ome_zarr_writes_report_and_json(tmp_path, halves, bottom, inception):
    """`gigasynth eval` in a real process: slide vs an OME-Zarr (µm/px from its metadata)."""
    slide = openslide.OpenSlide(str(SLIDE))
    zarr_path = _write_zarr(tmp_path / "fake.ome.zarr", bottom, slide_mpp(slide) * DOWNSAMPLE)
    report = tmp_path / "report.png"
    scales = (1, 4)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gigasynth",
            "eval",
            "--real",
            str(SLIDE),
            "--fake",
            str(zarr_path),
            "--real-region",
            str(halves[0]),
            "--scales",
            ",".join(map(str, scales)),
            "--n",
            "8",
            "--crop",
            str(CROP),
            "--bootstrap",
            "50",
            "--report",
            str(report),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["real_downsample"] == DOWNSAMPLE  # from the Zarr's µm/px over the slide's
    assert out["fake"] == str(zarr_path) and out["report"] == str(report)
    assert [s["scale"] for s in out["scales"]] == list(scales)
    for s in out["scales"]:
        assert {
            "kid",
            "kid_low",
            "kid_high",
            "fid",
            "n",
            "crop",
            "mpp",
            "real_field",
            "fake_field",
            "real_crops",
            "fake_crops",
            "real_tiles",
        } <= set(s)
        assert s["n"] == 8 and s["crop"] == CROP
        assert s["kid_low"] <= s["kid"] <= s["kid_high"]
        assert s["mpp"] == pytest.approx(slide_mpp(slide) * DOWNSAMPLE * s["scale"])
        assert s["fake_field"] == [bottom.shape[1] // s["scale"], bottom.shape[0] // s["scale"]]
    assert out["bands"] and all(
        {"low_px", "high_px", "real", "fake", "ratio"} <= set(b) for b in out["bands"]
    )
    for side in ("real", "fake"):
        colour = out["colour"][side]
        assert colour["tissue_fraction"] + colour["background_fraction"] == pytest.approx(1)
        assert colour["pixels"] > 0
    assert _png_size(report) == report_size(len(scales))


def _fail(args: list[str], capsys) -> str:
    """Run the CLI in this process; it must fail with one plain line on stderr."""
    assert main(["eval", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gigasynth: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_bad_input_gives_one_line_errors(tmp_path, halves, bottom, capsys):
    """Every error here comes before any Inception work."""
    slide = openslide.OpenSlide(str(SLIDE))
    width, height = slide.dimensions
    image = tmp_path / "fake.png"
    write_png(image, bottom)
    base = ["--real", str(SLIDE), "--fake", str(image), "--real-downsample", "2"]

    err = _fail([*base, "--real-region", f"0,0,{width + 1},100"], capsys)
    assert "outside" in err and f"{width}x{height}" in err
    err = _fail([*base, "--real-region", "100,100,100,400"], capsys)
    assert "empty" in err
    # the top half is 1110 x 306 px at downsample 2: 17 x 4 px at scale 64
    err = _fail([*base, "--real-region", str(halves[0]), "--scales", "1,64"], capsys)
    assert "real region" in err and "scale 64" in err and "smaller than a 64 px crop" in err
    err = _fail([*base, "--scales", "1,x"], capsys)
    assert "--scales" in err

    folder = tmp_path / "patches"
    folder.mkdir()
    for i in range(5):
        write_png(folder / f"{i}.png", bottom[:64, 64 * i : 64 * (i + 1)])
    err = _fail(
        [
            "--real",
            str(SLIDE),
            "--fake",
            str(folder),
            "--fake-mpp",
            "0.998",
            "--n",
            "8",
            "--crop",
            "32",
        ],
        capsys,
    )
    assert "holds 5 images, fewer than n=8" in err
    err = _fail(["--real", str(SLIDE), "--fake", str(folder), "--scales", "1"], capsys)
    assert "pixel size" in err and "--fake-mpp" in err
    err = _fail([*base, "--downsample", "2"], capsys)
    assert "--real-downsample" in err
