"""Patch sources: anything that yields random (size x size) RGB uint8 crops.

Sources are picklable and reopen their files in each process, so they can be handed
to data-loader worker processes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from gigasynth.data.tissue import THUMBNAIL_SIDE, cached_tissue_mask
from gigasynth.errors import GigasynthError
from gigasynth.images import read_rgb

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


class PatchSource(Protocol):
    name: str
    area: float  # pixels (at training resolution) that patches are drawn from

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
        self.area = float(images.shape[0] * images.shape[1] * images.shape[2])

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
    from the best pyramid level and resized. Tissue is found once on a thumbnail (and
    kept in `tissue_cache` when given). `area` is the tissue area in patch pixels.
    """

    def __init__(self, path: Path, downsample: float = 1.0, min_tissue: float = 0.5,
                 tissue_cache: Path | None = None) -> None:
        self.name = str(path)
        self.path = path
        if not path.exists():
            raise GigasynthError(f"slide not found: {path}")
        if downsample < 1:
            raise GigasynthError(f"downsample must be at least 1, not {downsample}")
        self._slide: Any = None
        self._pid = -1
        slide = self.slide
        self.downsample = downsample
        self.min_tissue = min_tissue
        self.dimensions: tuple[int, int] = slide.dimensions
        width, height = self.dimensions

        def thumbnail() -> np.ndarray:
            side = (THUMBNAIL_SIDE, THUMBNAIL_SIDE)
            return np.asarray(slide.get_thumbnail(side).convert("RGB"))

        self.mask = cached_tissue_mask(path, thumbnail, tissue_cache)
        self.mask_scale = (width / self.mask.shape[1], height / self.mask.shape[0])
        if self.mask.mean() < 1e-3:
            raise GigasynthError(f"no tissue found in slide {path}")
        self.tissue_fraction = float(self.mask.mean())
        self.area = self.tissue_fraction * width * height / downsample**2
        mpp = slide.properties.get("openslide.mpp-x")
        self.mpp = float(mpp) * downsample if mpp else None
        self._candidates_by_extent: dict[int, np.ndarray] = {}

    @property
    def slide(self) -> Any:
        """The OpenSlide handle of this process (reopened after a fork or unpickling)."""
        if self._slide is None or self._pid != os.getpid():
            import openslide

            try:
                self._slide = openslide.OpenSlide(str(self.path))
            except (openslide.OpenSlideError, OSError) as exc:
                raise GigasynthError(f"cannot read slide {self.path}: {exc}") from None
            self._pid = os.getpid()
        return self._slide

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_slide": None, "_pid": -1}

    def _candidates(self, extent: int) -> np.ndarray:
        """Mask-pixel coordinates whose patch footprint is mostly tissue."""
        cached = self._candidates_by_extent.get(extent)
        if cached is not None:
            return cached
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
        found = np.argwhere(frac >= self.min_tissue)
        self._candidates_by_extent[extent] = found
        return found

    def sample(self, rng: np.random.Generator, count: int, size: int) -> np.ndarray:
        import openslide

        extent = round(size * self.downsample)
        width, height = self.dimensions
        if extent > width or extent > height:
            raise GigasynthError(f"{self.name}: a {extent} px patch exceeds the slide")
        cands = self._candidates(extent)
        if len(cands) == 0:
            raise GigasynthError(f"{self.name}: no {extent} px region is mostly tissue")
        slide = self.slide
        level = slide.get_best_level_for_downsample(self.downsample)
        level_ds = slide.level_downsamples[level]
        read = round(extent / level_ds)
        sx, sy = self.mask_scale
        patches = []
        for my, mx in cands[rng.integers(0, len(cands), count)]:
            y = min(int(my * sy + rng.integers(0, max(1, int(sy)))), height - extent)
            x = min(int(mx * sx + rng.integers(0, max(1, int(sx)))), width - extent)
            try:
                region = slide.read_region((x, y), level, (read, read)).convert("RGB")
            except openslide.OpenSlideError as exc:
                raise GigasynthError(f"cannot read slide {self.name} at ({x}, {y}): {exc}") \
                    from None
            if read != size:
                region = region.resize((size, size), Image.Resampling.LANCZOS)
            patches.append(np.asarray(region))
        return np.stack(patches)


def open_source(path: str | Path, downsample: float = 1.0, npz_key: str | None = None,
                tissue_cache: Path | None = None):
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
    return SlideSource(path, downsample, tissue_cache=tissue_cache)
