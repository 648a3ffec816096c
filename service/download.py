"""Downloads: an OME-Zarr folder zipped on the fly, streamed without a temporary file."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 20


class _Pipe:
    """A write-only, non-seekable file whose written bytes are taken out between writes."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _files(folder: Path) -> Iterator[Path]:
    """Every regular file under `folder`, in a stable order; links are not followed."""
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                yield path


def zip_stream(folder: Path, top: str) -> Iterator[bytes]:
    """The bytes of a zip (stored, ZIP64 where needed) of `folder`, as `top/...` entries."""
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path in _files(folder):
            arcname = f"{top}/{path.relative_to(folder).as_posix()}"
            with open(path, "rb") as src, archive.open(arcname, "w", force_zip64=True) as dst:
                while block := src.read(CHUNK):
                    dst.write(block)
                    if data := pipe.take():
                        yield data
            if data := pipe.take():
                yield data
    if data := pipe.take():
        yield data


def file_stream(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            yield block
