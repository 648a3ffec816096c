"""Patch sources: anything that yields random (size x size) RGB uint8 crops.

Sources are picklable and reopen their files in each process, so they can be handed
to data-loader worker processes.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from gigasynth.data.regions import Region, resolve_region
from gigasynth.data.tissue import THUMBNAIL_SIDE, cached_tissue_mask, tissue_threshold
from gigasynth.errors import GigasynthError
from gigasynth.images import read_rgb

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
# How a slide region read at a downsample is brought to its size: area averaging, as slide
# pyramids and the evaluation's zooms do it. Training crops and the evaluation's real
# reference use this one filter, so a model is not trained on sharper (Lanczos) detail than
# the real tissue it is compared with.
SLIDE_RESAMPLING = Image.Resampling.BOX


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
            raise GigasynthError(
                f"{name}: expected (N, H, W, 3) uint8 images, got {images.shape} {images.dtype}"
            )
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
        return np.stack(
            [
                self.images[i, y : y + size, x : x + size]
                for i, y, x in zip(idx, ys, xs, strict=True)
            ]
        )


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
    kept in `tissue_cache` when given). `region` ('train', 'test' or x0,y0,x1,y1 in level-0
    px, see gigasynth.data.regions) keeps every patch wholly inside that part of the slide.
    `area` is the tissue area in patch pixels.
    """

    def __init__(
        self,
        path: Path,
        downsample: float = 1.0,
        min_tissue: float = 0.5,
        tissue_cache: Path | None = None,
        region: str | None = None,
    ) -> None:
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

        mpp = slide.properties.get("openslide.mpp-x")
        level0_mpp = float(mpp) if mpp else None
        self.mpp = level0_mpp * downsample if level0_mpp else None
        self.region = (
            resolve_region(region, width, height, level0_mpp)
            if region
            else Region(0, 0, width, height)
        )
        self.mask = cached_tissue_mask(path, self._thumbnail, tissue_cache)
        self.mask_scale = (width / self.mask.shape[1], height / self.mask.shape[0])
        sx, sy = self.mask_scale
        r = self.region
        in_region = self.mask[
            int(r.y0 / sy) : int(np.ceil(r.y1 / sy)), int(r.x0 / sx) : int(np.ceil(r.x1 / sx))
        ]
        if in_region.size == 0 or in_region.mean() < 1e-3:
            where = f" region {region}" if region else ""
            raise GigasynthError(f"no tissue found in slide {path}{where}")
        self.tissue_fraction = float(in_region.mean())
        self.area = self.tissue_fraction * r.width * r.height / downsample**2
        self._candidates_by_extent: dict[int, np.ndarray] = {}

    def _thumbnail(self) -> np.ndarray:
        side = (THUMBNAIL_SIDE, THUMBNAIL_SIDE)
        return np.asarray(self.slide.get_thumbnail(side).convert("RGB"))

    @cached_property
    def tissue_threshold(self) -> float:
        """The saturation above which this slide's pixels are tissue (its thumbnail's)."""
        return tissue_threshold(self._thumbnail())

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
        frac = (
            integral[fh:, fw:] - integral[:-fh, fw:] - integral[fh:, :-fw] + integral[:-fh, :-fw]
        ) / (fh * fw)
        found = np.argwhere(frac >= self.min_tissue)
        r = self.region
        top, left = found[:, 0] * sy, found[:, 1] * sx
        inside = (
            (top >= r.y0 - sy)
            & (top <= r.y1 - extent)
            & (left >= r.x0 - sx)
            & (left <= r.x1 - extent)
        )
        found = found[inside]
        self._candidates_by_extent[extent] = found
        return found

    def positions(self, rng: np.random.Generator, count: int, extent: int) -> np.ndarray:
        """(count, 2) level-0 (y, x) corners of extent-px patches, mostly tissue, in the region."""
        r = self.region
        if extent > r.width or extent > r.height:
            raise GigasynthError(
                f"{self.name}: a {extent} px patch exceeds the slide region "
                f"({r.width}x{r.height} px)"
            )
        cands = self._candidates(extent)
        if len(cands) == 0:
            raise GigasynthError(f"{self.name}: no {extent} px region is mostly tissue")
        sx, sy = self.mask_scale
        corners = []
        for my, mx in cands[rng.integers(0, len(cands), count)]:
            y = min(max(int(my * sy + rng.integers(0, max(1, int(sy)))), r.y0), r.y1 - extent)
            x = min(max(int(mx * sx + rng.integers(0, max(1, int(sx)))), r.x0), r.x1 - extent)
            corners.append((y, x))
        return np.array(corners, dtype=np.int64).reshape(count, 2)

    def sample(self, rng: np.random.Generator, count: int, size: int) -> np.ndarray:
        import openslide

        extent = round(size * self.downsample)
        corners = self.positions(rng, count, extent)
        slide = self.slide
        level = slide.get_best_level_for_downsample(self.downsample)
        read = round(extent / slide.level_downsamples[level])
        patches = []
        for y, x in corners:
            try:
                region = slide.read_region((int(x), int(y)), level, (read, read)).convert("RGB")
            except openslide.OpenSlideError as exc:
                raise GigasynthError(
                    f"cannot read slide {self.name} at ({x}, {y}): {exc}"
                ) from None
            if read != size:
                region = region.resize((size, size), SLIDE_RESAMPLING)
            patches.append(np.asarray(region))
        return np.stack(patches)


def open_source(
    path: str | Path,
    downsample: float = 1.0,
    npz_key: str | None = None,
    tissue_cache: Path | None = None,
    region: str | None = None,
    min_tissue: float = 0.5,
) -> PatchSource:
    """A patch source for a slide file, an image folder, a single image or an .npz file.

    `region` restricts a slide to part of it (gigasynth.data.regions); other inputs have no
    regions and refuse one. `min_tissue` is the least tissue fraction of a slide patch
    (0: uniform crops, background included).
    """
    if not 0.0 <= min_tissue <= 1.0:
        raise GigasynthError(f"min_tissue must be in [0, 1], not {min_tissue}")
    path = Path(path)
    if not path.exists():
        raise GigasynthError(f"data not found: {path}")
    is_array = (
        path.is_dir()
        or path.suffix == ".npz"
        or path.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
    )
    if is_array and region:
        raise GigasynthError(f"{path}: a region applies to slides only")
    if path.is_dir():
        return ArraySource(load_folder(path), str(path))
    if path.suffix == ".npz":
        return ArraySource(load_npz(path, npz_key), str(path))
    if is_array:
        return ArraySource(read_rgb(path)[None], str(path))
    return SlideSource(
        path, downsample, min_tissue=min_tissue, tissue_cache=tissue_cache, region=region
    )


class SlideRegions:
    """A region of a slide (level-0 px, see gigasynth.data.regions) read at `downsample`.

    Every pixel is the area average of a downsample x downsample block of level 0 (read
    from the finest pyramid level that is coarse enough), so whole-number downsamples
    agree exactly with averaging level 0; background is included, unlike SlideSource,
    which draws tissue patches for training.
    """

    def __init__(self, path: Path, downsample: float, region: str = "test") -> None:
        import openslide

        if not downsample >= 1:
            raise GigasynthError(f"the real downsample must be at least 1, not {downsample}")
        try:
            self.slide = openslide.OpenSlide(str(path))
        except (openslide.OpenSlideError, OSError) as exc:
            raise GigasynthError(f"cannot read slide {path}: {exc}") from None
        self.path, self.downsample = path, downsample
        width, height = self.slide.dimensions
        self.level0_mpp = slide_mpp(self.slide)
        self.region = resolve_region(region, width, height, self.level0_mpp)
        self.height = int(self.region.height // downsample)
        self.width = int(self.region.width // downsample)
        if self.height < 1 or self.width < 1:
            raise GigasynthError(
                f"region {self.region} of {path} is under one pixel at downsample {downsample}"
            )
        self.level = self.slide.get_best_level_for_downsample(downsample)
        self.level_downsample = float(self.slide.level_downsamples[self.level])

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        import openslide

        d, ld = self.downsample, self.level_downsample
        left, top = self.region.x0 + round(x * d), self.region.y0 + round(y * d)
        size = (max(1, round(w * d / ld)), max(1, round(h * d / ld)))
        try:
            image = self.slide.read_region((left, top), self.level, size).convert("RGB")
        except openslide.OpenSlideError as exc:
            raise GigasynthError(
                f"cannot read slide {self.path} at ({left}, {top}): {exc}"
            ) from None
        if size != (w, h):
            image = image.resize((w, h), SLIDE_RESAMPLING)
        return np.asarray(image)


def slide_mpp(slide: Any) -> float | None:
    """µm per level-0 pixel an OpenSlide handle states (openslide.mpp-x), or None."""
    try:
        value = float(slide.properties.get("openslide.mpp-x") or "nan")
    except ValueError:
        return None
    return value if np.isfinite(value) and value > 0 else None
