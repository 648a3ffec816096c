"""Image sets to evaluate: folders, .npz arrays, slides, single images and OME-Zarr outputs.

Every input becomes an (N, H, W, 3) uint8 array. Stacks of images (folders, .npz) give
N distinct images, or one random crop of each with `crop`; large images (slides, OME-Zarr
level 0, a single image file) give N random crops. Randomness comes from the caller's
generator, so a run is repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from gigasynth.data import open_source
from gigasynth.data.sources import load_folder, load_npz
from gigasynth.errors import FieldError, GigasynthError
from gigasynth.images import read_rgb
from gigasynth.io.reader import is_ome_zarr, open_slide

DEFAULT_CROP = 64
# Single image files (as gigasynth.data reads them); other files are opened as slides.
IMAGE_FILES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


class Regions(Protocol):
    """A large RGB image read region by region."""

    @property
    def height(self) -> int:
        """Rows, px."""
        ...

    @property
    def width(self) -> int:
        """Columns, px."""
        ...

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        """(h, w, 3) uint8 pixels of the region starting at (y, x)."""
        ...


@dataclass
class ArrayRegions:
    """Regions of an in-memory (H, W, 3) image."""

    image: np.ndarray

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        return self.image[y : y + h, x : x + w]


class ZarrRegions:
    """Level 0 of an OME-Zarr output, read through gigasynth.io's reader (the one owner of
    the layout)."""

    def __init__(self, root: Path) -> None:
        self.slide = open_slide(root)
        self.height, self.width = self.slide.levels[0]

    @property
    def mpp(self) -> float | None:
        """µm per pixel the output records (OME-XML, else the NGFF scale), or None."""
        return self.slide.mpp

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        return self.slide.read_region(0, y, x, h, w)


def split_spec(spec: str) -> tuple[Path, str | None]:
    """'faces.npz:test' -> (faces.npz, 'test'); other paths pass through."""
    head, sep, key = spec.rpartition(":")
    if sep and head.endswith(".npz") and key:
        return Path(head), key
    return Path(spec), None


def open_regions(spec: str) -> Regions:
    """A large image to read by region: OME-Zarr output or a single image file."""
    path, _ = split_spec(spec)
    if not path.exists():
        raise GigasynthError(f"not found: {path}")
    if is_ome_zarr(path):
        return ZarrRegions(path)
    if path.suffix.lower() in IMAGE_FILES:
        return ArrayRegions(read_rgb(path))
    raise GigasynthError(f"{path}: not an OME-Zarr output or an image file")


def random_crops(regions: Regions, count: int, crop: int, rng: np.random.Generator) -> np.ndarray:
    """`count` uniformly placed crop x crop regions."""
    if crop > regions.height or crop > regions.width:
        raise GigasynthError(f"crop {crop} px exceeds the image ({regions.width}x{regions.height})")
    ys = rng.integers(0, regions.height - crop + 1, count)
    xs = rng.integers(0, regions.width - crop + 1, count)
    return np.stack([regions.read(int(y), int(x), crop, crop) for y, x in zip(ys, xs, strict=True)])


def _subset(
    images: np.ndarray, count: int, crop: int | None, rng: np.random.Generator
) -> np.ndarray:
    """Up to `count` distinct images in random order, each cropped at random if asked."""
    chosen = images[np.sort(rng.permutation(len(images))[:count])]
    if crop is None:
        return chosen
    _, h, w, _ = chosen.shape
    if crop > h or crop > w:
        raise GigasynthError(f"crop {crop} px exceeds the images ({w}x{h})")
    ys = rng.integers(0, h - crop + 1, len(chosen))
    xs = rng.integers(0, w - crop + 1, len(chosen))
    return np.stack(
        [im[y : y + crop, x : x + crop] for im, y, x in zip(chosen, ys, xs, strict=True)]
    )


def load_images(
    spec: str, count: int, crop: int | None, rng: np.random.Generator, downsample: float = 1.0
) -> np.ndarray:
    """(N, H, W, 3) uint8 samples of an input; N = count, or fewer for a smaller stack.

    spec: an image folder, `file.npz` or `file.npz:ARRAY`, an OME-Zarr output folder, a
    single image file or a slide (tissue crops, read at `downsample` of level 0).
    """
    if count < 1:
        raise FieldError(f"[n] must be at least 1, not {count}")
    if crop is not None and crop < 8:
        raise FieldError(f"[crop] must be at least 8 px, not {crop}")
    path, key = split_spec(spec)
    if not path.exists():
        raise GigasynthError(f"not found: {path}")
    if is_ome_zarr(path):
        return random_crops(ZarrRegions(path), count, crop or DEFAULT_CROP, rng)
    if path.is_dir():
        return _subset(load_folder(path), count, crop, rng)
    if path.suffix == ".npz":
        images = load_npz(path, key)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise GigasynthError(
                f"{spec}: expected (N, H, W, 3) uint8 images, got {images.shape} {images.dtype}"
            )
        return _subset(images, count, crop, rng)
    if path.suffix.lower() in IMAGE_FILES:
        regions = ArrayRegions(read_rgb(path))
        if crop is None:
            return regions.image[None]
        return random_crops(regions, count, crop, rng)
    return open_source(path, downsample).sample(rng, count, crop or DEFAULT_CROP)
