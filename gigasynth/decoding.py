"""Image files (PNG, JPEG, TIFF) read as their sender meant them, within a memory cost
known from the header before any pixel is decoded. The one owner of these rules: the
CLI's `--layout` and the service's layout uploads both read images through here.

Before decoding (from the header; Pillow's open is lazy):
- at most `max_pixels` pixels, and one frame: animated and multi-page images are refused
  (which frame was meant is not ours to guess);
- the compressed data must be able to hold the pixels the header claims, else the file is
  truncated or a decompression bomb: a Huffman-coded JPEG spends at least one bit on each
  8x8 block of each component, deflate (PNG) compresses at most 1032:1, a compressed TIFF
  is taken to at most 4096:1 and an uncompressed one holds every byte. An arithmetic-coded
  JPEG has no such bound and is refused;
- `ImageHeader.decode_bytes` is the memory a decode takes, so a caller can budget it.

Decoding (a truncated image is refused: Pillow's LOAD_TRUNCATED_IMAGES stays off):
- EXIF orientation is applied: the image is taken as a viewer shows it;
- 16-bit grey is scaled to 8 bits (v / 257, rounded), never clipped; 16-bit colour PNGs
  keep their high byte (Pillow's reading, also a scaling);
- 1-bit, grey, palette, RGB and YCbCr images become RGB as Pillow converts them; float,
  32-bit integer, CMYK, LAB and HSV images are refused (they have no agreed white);
- alpha (RGBA, LA, PA, a palette or grey image with a transparent colour): transparent
  is glass. A grey image (a tissue mask, light = tissue) is laid over black, so a
  transparent pixel is no tissue; a colour image over white, a slide's glass.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from gigasynth.errors import GigasynthError

# A source: a file's path or its bytes (an upload held in memory).
Source = Path | bytes

# Pillow's bytes per pixel of each mode taken (its image memory, before conversion).
_STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_STORED_BYTES.update({m: 4 for m in ("LA", "La", "PA", "RGB", "RGBA", "RGBa", "RGBX", "YCbCr")})
_REFUSED_MODES = {
    "F": "floating-point",
    "I": "signed or 32-bit integer",
    "CMYK": "CMYK",
    "LAB": "Lab",
    "HSV": "HSV",
}
DEFLATE_MAX_RATIO = 1032  # deflate's largest ratio: 258 bytes per 2-bit match
TIFF_MAX_RATIO = 4096  # above LZW's (about 1365:1), deflate's and PackBits' (64:1)
# TIFF compressions with that bound (others, such as CCITT fax or zstd, have none).
_TIFF_BOUNDED = {"raw", "packbits", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate"}
_JPEG_ARITHMETIC_SOF = {0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7} | _JPEG_ARITHMETIC_SOF
_ROWS_PER_STRIP = 256  # rows converted at a time where a whole-image temporary would cost
# Pillow keeps a large image in blocks of this size (its default: 16 MiB). glibc serves
# blocks under its mmap threshold (at most 32 MiB) from per-thread heaps that keep them
# after a decode, so each thread that decoded once held its image's memory for good;
# blocks above it are mapped and given back when freed. Pillow's setting is process-wide.
PILLOW_BLOCK_BYTES = 64 << 20
Image.core.set_block_size(PILLOW_BLOCK_BYTES)

# EXIF orientation -> how to turn the stored (H, W, C) array into the one a viewer shows.
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, checked: its format and mode, its size as shown
    (EXIF orientation applied), and what decoding it costs."""

    format: str
    mode: str
    width: int
    height: int
    orientation: int
    alpha: bool

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decode_bytes(self) -> int:
        """Peak memory of `read_image`: Pillow's image, its bytes as Pillow hands them to
        NumPy (twice, while it joins them), one more RGB array (the oriented copy or the
        grey image's channels) and, with alpha, an RGBA copy; Pillow turns an oriented
        TIFF itself, in a second image of its own. Measured in tests/test_decoding.py."""
        stored = _STORED_BYTES[self.mode]
        turned = stored if self.format == "TIFF" and self.orientation != 1 else 0
        return self.pixels * (stored + turned + 9 + (4 if self.alpha else 0))

    @property
    def check_bytes(self) -> int:
        """Peak memory of `check_image`: Pillow's image only, a JPEG at 1/8 scale."""
        scale = 64 if self.format == "JPEG" else 1
        return -(-self.pixels * _STORED_BYTES[self.mode] // scale)


def _open(source: Source) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")


def _size(fp: BinaryIO) -> int:
    fp.seek(0, io.SEEK_END)
    size = fp.tell()
    fp.seek(0)
    return size


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _jpeg_sof(fp: BinaryIO) -> int | None:
    """The JPEG's start-of-frame marker (0xC0 ... 0xCF), from its segments before the scan."""
    fp.seek(2)
    while True:
        head = fp.read(4)
        if len(head) < 4 or head[0] != 0xFF:
            return None
        marker, length = head[1], struct.unpack(">H", head[2:])[0]
        if marker in _JPEG_SOF or marker == 0xDA:
            return marker if marker != 0xDA else None
        fp.seek(length - 2, io.SEEK_CUR)


def _png_data_bytes(fp: BinaryIO) -> int:
    """The bytes of a PNG's IDAT chunks that the file holds (its compressed pixels)."""
    size = _size(fp)
    fp.seek(8)
    total = 0
    while len(head := fp.read(8)) == 8:
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IDAT":
            total += min(length, size - fp.tell())
        fp.seek(length + 4, io.SEEK_CUR)
    return total


def _raw_bytes(im: Image.Image) -> int:
    """The image's pixels in bytes as stored (bits per sample rounded to whole rows)."""
    bits = {"1": 1, "I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16}.get(im.mode, 8)
    return im.height * _ceil(im.width * len(im.getbands()) * bits, 8)


def _check_holds(im: Image.Image, fp: BinaryIO, name: str) -> None:
    """That the file's compressed data can hold the pixels its header claims."""
    size = _size(fp)
    if im.format == "JPEG":
        sof = _jpeg_sof(fp)
        if sof in _JPEG_ARITHMETIC_SOF:
            raise GigasynthError(f"{name} is an arithmetic-coded JPEG, which is not taken")
        layers = getattr(im, "layer", [])
        hmax = max((h for _, h, _, _ in layers), default=1)
        vmax = max((v for _, _, v, _ in layers), default=1)
        blocks = sum(
            _ceil(_ceil(im.width * h, hmax), 8) * _ceil(_ceil(im.height * v, vmax), 8)
            for _, h, v, _ in layers
        )
        need, why = _ceil(blocks, 8), "a JPEG needs a bit for each 8x8 block"
    elif im.format == "PNG":
        size = _png_data_bytes(fp)
        need = _ceil(_raw_bytes(im), DEFLATE_MAX_RATIO)
        why = f"deflate compresses at most {DEFLATE_MAX_RATIO}:1"
    elif im.format == "TIFF":
        compression = im.info.get("compression", "raw")
        if compression not in _TIFF_BOUNDED:
            return
        ratio = 1 if compression == "raw" else TIFF_MAX_RATIO
        need = _ceil(_raw_bytes(im), ratio)
        why = "uncompressed" if ratio == 1 else f"{compression} compresses at most {ratio}:1"
    else:
        return
    if size < need:
        raise GigasynthError(
            f"{name} is truncated or corrupt: its {size:,} bytes of data cannot hold the "
            f"{im.width}x{im.height} px its header claims ({why})"
        )


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1 to 8; 1: as stored). A PNG's eXIf chunk counts only where
    it comes before the pixels, as the PNG specification recommends (one after them could
    be found only by decoding)."""
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    value = im.getexif().get(0x0112, 1)
    return value if value in _ORIENT else 1


def _header(im: Image.Image, fp: BinaryIO, name: str, max_pixels: int) -> ImageHeader:
    """The checked header of an open image (nothing decoded yet)."""
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        raise GigasynthError(
            f"{name} has {frames} frames (an animated or multi-page image): give one image"
        )
    if im.mode in _REFUSED_MODES or im.mode not in _STORED_BYTES:
        kind = _REFUSED_MODES.get(im.mode, f"Pillow mode {im.mode}")
        raise GigasynthError(
            f"{name} is a {kind} image, which has no agreed white: give an 8- or "
            "16-bit grey, palette or RGB image"
        )
    width, height = im.size
    if width < 1 or height < 1:
        raise GigasynthError(f"{name} is empty ({width}x{height} px)")
    if width * height > max_pixels:
        raise GigasynthError(
            f"{name} is too large: {width}x{height} px exceeds {max_pixels:,} pixels"
        )
    _check_holds(im, fp, name)
    orientation = _orientation(im)
    if orientation in (5, 6, 7, 8) and im.format != "TIFF":  # Pillow's TIFF size is shown
        width, height = height, width
    alpha = "A" in im.mode or "a" in im.mode or "transparency" in im.info
    if alpha and im.mode.startswith("I;16"):
        raise GigasynthError(f"{name} is 16-bit grey with a transparent value: give it opaque")
    return ImageHeader(im.format or "", im.mode, width, height, orientation, alpha)


class _Opened:
    """An image opened lazily from a source, its header checked; one-line errors."""

    def __init__(self, source: Source, name: str, max_pixels: int) -> None:
        self.name = name
        self.fp = _open(source) if not isinstance(source, Path) or source.is_file() else None
        if self.fp is None:
            raise GigasynthError(f"{name} is not a file (an image)")
        try:
            self.im = Image.open(self.fp)
        except UnidentifiedImageError:
            self.fp.close()
            raise GigasynthError(f"{name} is not an image (PNG, JPEG, TIFF)") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            self.fp.close()
            raise GigasynthError(f"cannot read {name}: {exc}") from None
        try:
            self.header = _header(self.im, self.fp, name, max_pixels)
            self.orientation = self.header.orientation  # still to apply to the pixels
            self.fp.seek(0)
        except BaseException:
            self.close()
            raise

    def load(self) -> None:
        """Decode the pixels; a truncated or corrupt file is a one-line error."""
        if ImageFile.LOAD_TRUNCATED_IMAGES:
            raise GigasynthError("Pillow's LOAD_TRUNCATED_IMAGES is on: truncation goes unseen")
        try:
            self.im.load()
        except (OSError, SyntaxError, ValueError, struct.error) as exc:
            raise GigasynthError(f"cannot read {self.name}: {exc}") from None
        if self.header.format != "PNG":  # Pillow turns a TIFF itself, dropping the tag
            self.orientation = _orientation(self.im)

    def close(self) -> None:
        if hasattr(self, "im"):
            self.im.close()
        if self.fp is not None:
            self.fp.close()

    def __enter__(self) -> _Opened:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def read_header(source: Source, name: str, max_pixels: int) -> ImageHeader:
    """The image's checked header, nothing decoded (one-line GigasynthError otherwise).
    `name` is how messages call the image ("layout x.png", "the layout")."""
    with _Opened(source, name, max_pixels) as opened:
        return opened.header


def check_image(source: Source, name: str, max_pixels: int) -> ImageHeader:
    """The checked header of an image that decodes (not truncated, not corrupt); a JPEG is
    decoded at 1/8 scale (its draft mode reads every byte of the scan for 1/64 of the
    memory). Its pixels are not kept: see `header.check_bytes` for its cost."""
    with _Opened(source, name, max_pixels) as opened:
        if opened.header.format == "JPEG":
            opened.im.draft(opened.im.mode, (1, 1))
        opened.load()
        return opened.header


def is_grey(rgb: np.ndarray) -> bool:
    """Whether R = G = B at every pixel of an (H, W, 3+) image (compared a strip at a time,
    so no whole-image temporary)."""
    for top in range(0, rgb.shape[0], _ROWS_PER_STRIP):
        strip = rgb[top : top + _ROWS_PER_STRIP]
        if not ((strip[..., 0] == strip[..., 1]).all() and (strip[..., 1] == strip[..., 2]).all()):
            return False
    return True


def _over_glass(pixels: np.ndarray) -> np.ndarray:
    """(H, W, C + 1) with alpha last -> (H, W, C) laid over glass: black under a grey image,
    white under a colour one (see the module's rules)."""
    colour = pixels[..., :-1]
    glass = 0 if colour.shape[2] == 1 or is_grey(colour) else 255
    out = np.empty(colour.shape, np.uint8)
    for top in range(0, pixels.shape[0], _ROWS_PER_STRIP):
        rows = slice(top, top + _ROWS_PER_STRIP)
        a = pixels[rows, :, -1:].astype(np.uint32)
        mixed = colour[rows].astype(np.uint32) * a + glass * (255 - a) + 127
        out[rows] = mixed // 255
    return out


_SIXTEEN_TO_EIGHT = ((np.arange(1 << 16, dtype=np.uint32) + 128) // 257).astype(np.uint8)


def _pixels(im: Image.Image, header: ImageHeader) -> np.ndarray:
    """The decoded image as (H, W, C) uint8 by the module's rules: C = 1 (grey), 3 (RGB),
    2 or 4 (with alpha last)."""
    mode = im.mode
    if mode.startswith("I;16"):
        return _SIXTEEN_TO_EIGHT[np.asarray(im)][..., None]
    if header.alpha:
        target = "LA" if mode in ("L", "LA", "La", "1") else "RGBA"
        return np.asarray(im if mode == target else im.convert(target))
    if mode in ("1", "L"):
        return np.asarray(im.convert("L") if mode == "1" else im)[..., None]
    return np.asarray(im if mode == "RGB" else im.convert("RGB"))


def read_image(source: Source, name: str, max_pixels: int) -> np.ndarray:
    """The image as (H, W, 3) uint8, read by the module's rules; one-line GigasynthError
    for what they refuse. Its memory peak is `read_header(...).decode_bytes`."""
    with _Opened(source, name, max_pixels) as opened:
        opened.load()
        pixels = _pixels(opened.im, opened.header)
    if opened.header.alpha:
        pixels = _over_glass(pixels)
    if opened.orientation != 1:
        pixels = _ORIENT[opened.orientation](pixels)
    if pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels)
