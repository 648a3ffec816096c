"""Patch sources: anything that yields random (size x size) RGB uint8 crops."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from gigasynth.data.tissue import tissue_mask
from gigasynth.errors import GigasynthError
from gigasynth.images import read_rgb

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


class PatchSource(Protocol):
    name: str

    def sample(self, rng: np.random.Generator, count: int, size: int) -> np.ndarray:
        """(count, size, size, 3) uint8 patches."""
        ...


class ArraySource:
    """Random crops from an in-memory stack of images (N, H, W, 3) uint8."""

    def __init__(self, images: np.ndarray, name: str) -> None:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise GigasynthError(f"{name}: expected (N, H, W, 3) uint8 images, got "
                                 f"{images.shape} {images.dtype}")
        if len(images) == 0:
            raise GigasynthError(f"{name}: holds no images")
        self.images = images
        self.name = name

    def sample(self, rng: np.random.Generator, count: int, size: int) -> np.ndarray:
        n, h, w, _ = self.images.shape
        if size > h or size > w:
            raise GigasynthError(f"{self.name}: images of {w}x{h} are smaller than {size} px")
        idx = rng.integers(0, n, count)
        ys = rng.integers(0, h - size + 1, count)
        xs = rng.integers(0, w - size + 1, count)
        return np.stack([self.images[i, y:y + size, x:x + size]
                         for i, y, x in zip(idx, ys, xs, strict=True)])


def load_npz(path: Path, key: str | None = None) -> np.ndarray:
    """The image array of an .npz file: `key`, else 'train', else its only array."""
    try:
        with np.load(path) as data:
            names = list(data.keys())
            chosen = key or ("train" if "train" in names else None)
            if chosen is None:
                arrays = [n for n in names if data[n].ndim == 4]
                if len(arrays) != 1:
                    raise GigasynthError(f"{path}: name the image array (one of {names})")
                chosen = arrays[0]
            if chosen not in names:
                raise GigasynthError(f"{path}: has no array {chosen!r} (has {names})")
            return data[chosen]
    except (OSError, ValueError) as exc:
        raise GigasynthError(f"cannot read {path}: {exc}") from None


def load_folder(path: Path) -> np.ndarray:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise GigasynthError(f"{path}: no images found")
    images = [read_rgb(p) for p in files]
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise GigasynthError(f"{path}: images differ in size ({sorted(shapes)[:3]} ...)")
    return np.stack(images)


class SlideSource:
    """Random tissue patches from a whole-slide image read through OpenSlide.

    A patch of `size` px at `downsample` d covers size * d px of level 0; it is read
    from the best pyramid level and resized. Tissue is found once on a thumbnail.
    """

    def __init__(self, path: Path, downsample: float = 1.0, min_tissue: float = 0.5) -> None:
        import openslide

        self.name = str(path)
        if not path.exists():
            raise GigasynthError(f"slide not found: {path}")
        try:
            self.slide = openslide.OpenSlide(str(path))
        except (openslide.OpenSlideError, OSError) as exc:
            raise GigasynthError(f"cannot read slide {path}: {exc}") from None
        if downsample < 1:
            raise GigasynthError(f"downsample must be at least 1, not {downsample}")
        self.downsample = downsample
        self.min_tissue = min_tissue
        width, height = self.slide.dimensions
        thumb = np.asarray(self.slide.get_thumbnail((1024, 1024)).convert("RGB"))
        self.mask = tissue_mask(thumb)
        self.mask_scale = (width / self.mask.shape[1], height / self.mask.shape[0])
        if self.mask.mean() < 1e-3:
            raise GigasynthError(f"no tissue found in slide {path}")
        self.tissue_fraction = float(self.mask.mean())
        mpp = self.slide.properties.get("openslide.mpp-x")
        self.mpp = float(mpp) * downsample if mpp else None

    def _candidates(self, extent: int) -> np.ndarray:
        """Mask-pixel coordinates whose patch footprint is mostly tissue."""
        sx, sy = self.mask_scale
        fh = max(1, round(extent / sy))
        fw = max(1, round(extent / sx))
        m = self.mask.astype(np.float32)
        integral = np.pad(m.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        h, w = m.shape
        if fh > h or fw > w:
            return np.empty((0, 2), dtype=np.int64)
        frac = (integral[fh:, fw:] - integral[:-fh, fw:] - integral[fh:, :-fw]
                + integral[:-fh, :-fw]) / (fh * fw)
        return np.argwhere(frac >= self.min_tissue)

    def sample(self, rng: np.random.Generator, count: int, size: int) -> np.ndarray:
        extent = round(size * self.downsample)
        width, height = self.slide.dimensions
        if extent > width or extent > height:
            raise GigasynthError(f"{self.name}: a {extent} px patch exceeds the slide")
        cands = self._candidates(extent)
        if len(cands) == 0:
            raise GigasynthError(f"{self.name}: no {extent} px region is mostly tissue")
        level = self.slide.get_best_level_for_downsample(self.downsample)
        level_ds = self.slide.level_downsamples[level]
        read = round(extent / level_ds)
        sx, sy = self.mask_scale
        patches = []
        for my, mx in cands[rng.integers(0, len(cands), count)]:
            y = min(int(my * sy + rng.integers(0, max(1, int(sy)))), height - extent)
            x = min(int(mx * sx + rng.integers(0, max(1, int(sx)))), width - extent)
            region = self.slide.read_region((x, y), level, (read, read)).convert("RGB")
            if read != size:
                region = region.resize((size, size), Image.Resampling.LANCZOS)
            patches.append(np.asarray(region))
        return np.stack(patches)


def open_source(path: str | Path, downsample: float = 1.0, npz_key: str | None = None):
    """A patch source for a slide file, an image folder, a single image or an .npz file."""
    path = Path(path)
    if not path.exists():
        raise GigasynthError(f"data not found: {path}")
    if path.is_dir():
        return ArraySource(load_folder(path), str(path))
    if path.suffix == ".npz":
        return ArraySource(load_npz(path, npz_key), str(path))
    if path.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp", ".webp"}:
        return ArraySource(read_rgb(path)[None], str(path))
    return SlideSource(path, downsample)


def open_sources(patterns: list[str], downsample: float = 1.0) -> list:
    """Sources for paths and globs; a glob that matches nothing is an error."""
    sources = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise GigasynthError(f"no data matches {pattern!r}")
        sources.extend(open_source(m, downsample) for m in matches)
    return sources
