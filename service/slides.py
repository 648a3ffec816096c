"""DeepZoom tiles of finished jobs, rendered from the pyramid and kept in a small LRU cache."""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from pathlib import Path

from service.deepzoom import DeepZoom
from service.pyramid import Pyramid

JPEG_QUALITY = 90
_OPEN_PYRAMIDS = 32


class _Lru:
    """A thread-safe mapping that forgets its least recently used entries beyond `size`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key, value) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def drop(self, predicate) -> None:
        with self._lock:
            for key in [k for k in self._items if predicate(k)]:
                del self._items[key]


class SlideTiles:
    """DZI descriptors and JPEG tiles for slides identified by (job id, version tag)."""

    def __init__(self, cache_entries: int) -> None:
        self._pyramids = _Lru(_OPEN_PYRAMIDS)
        self._tiles = _Lru(cache_entries)

    def pyramid(self, job_id: str, zarr_path: Path) -> Pyramid:
        found = self._pyramids.get(job_id)
        if found is None:
            found = Pyramid(zarr_path)
            self._pyramids.put(job_id, found)
        return found

    def geometry(self, job_id: str, zarr_path: Path) -> DeepZoom:
        p = self.pyramid(job_id, zarr_path)
        return DeepZoom(p.width, p.height)

    def tile(self, job_id: str, zarr_path: Path, level: int, col: int, row: int) -> bytes:
        """The JPEG of one tile; the caller has checked that it lies within the grid."""
        key = (job_id, level, col, row)
        data = self._tiles.get(key)
        if data is None:
            dz = self.geometry(job_id, zarr_path)
            x0, y0, x1, y1 = dz.tile_bounds(level, col, row)
            image = self.pyramid(job_id, zarr_path).region(dz.scale(level), x0, y0, x1, y1)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=JPEG_QUALITY)
            data = buffer.getvalue()
            self._tiles.put(key, data)
        return data

    def forget(self, job_id: str) -> None:
        """Drop what is cached of a deleted job."""
        self._pyramids.drop(lambda k: k == job_id)
        self._tiles.drop(lambda k: k[0] == job_id)


def etag(job_id: str, version: float, *parts: object) -> str:
    """A strong ETag for an immutable rendition of a finished job."""
    text = ":".join(str(x) for x in (job_id, repr(version), *parts))
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'
