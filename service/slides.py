"""The service's caching of DeepZoom tiles: generators of open slides and encoded tiles, LRU.

Geometry, reading and encoding are the library's (`gigasynth.io.DeepZoomGenerator`); this
module only decides what stays in memory, and the ETags of what is served.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from gigasynth.io import DeepZoomGenerator, open_slide

_OPEN_SLIDES = 32


class _Lru:
    """A thread-safe mapping that forgets its least recently used entries beyond `size`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: Hashable, value: Any) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def drop(self, predicate: Callable[[Any], bool]) -> None:
        with self._lock:
            for key in [k for k in self._items if predicate(k)]:
                del self._items[key]


class SlideTiles:
    """DeepZoom generators and JPEG tiles of finished jobs, by job id."""

    def __init__(self, cache_entries: int) -> None:
        self._generators = _Lru(_OPEN_SLIDES)
        self._tiles = _Lru(cache_entries)

    def generator(self, job_id: str, zarr_path: Path) -> DeepZoomGenerator:
        """The job's DeepZoom generator (GigasynthError if its OME-Zarr cannot be read)."""
        found = self._generators.get(job_id)
        if found is None:
            found = DeepZoomGenerator(open_slide(zarr_path))
            self._generators.put(job_id, found)
        return found

    def tile(self, job_id: str, zarr_path: Path, level: int, col: int, row: int) -> bytes:
        """The JPEG of one DeepZoom tile (GigasynthError if there is no such tile)."""
        key = (job_id, level, col, row)
        data = self._tiles.get(key)
        if data is None:
            data = self.generator(job_id, zarr_path).get_tile_bytes(level, (col, row))
            self._tiles.put(key, data)
        return data

    def forget(self, job_id: str) -> None:
        """Drop what is cached of a deleted job."""
        self._generators.drop(lambda k: k == job_id)
        self._tiles.drop(lambda k: k[0] == job_id)


def etag(job_id: str, version: float, *parts: object) -> str:
    """A strong ETag for an immutable rendition of a finished job."""
    text = ":".join(str(x) for x in (job_id, repr(version), *parts))
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'
