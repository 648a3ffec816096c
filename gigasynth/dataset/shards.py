"""Shards on disk: written whole under a temporary name, then renamed.

A PNG shard is a folder `shard-NNNNNN/` of `KEY.png` files; a tar shard is
`shard-NNNNNN.tar` holding `KEY.png` and `KEY.json` per sample (webdataset style). A
cascade dataset's shards also hold each patch's tissue mask, `KEY.mask.png`, beside it
(webdataset: the sample's "mask.png").
Temporary names start with `.shard-` and end in `.tmp`, so a reader listing
`shard-*` never sees a partial shard, and a resumed run removes the leftovers.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

from gigasynth.atomic import atomic_path
from gigasynth.dataset.patches import Patch, encode_png
from gigasynth.dataset.spec import MASK_SUFFIX, DatasetSpec
from gigasynth.errors import GigasynthError

TEMP_GLOB = ".shard-*.tmp"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a file with fixed owner, mode and time, so equal content gives equal bytes."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def _files(spec: DatasetSpec, patch: Patch) -> dict[str, bytes]:
    """A patch's files by suffix: its PNG, its tissue mask (a cascade's) and, in a tar
    shard, its metadata."""
    files = {".png": encode_png(patch.image)}
    if spec.cascade is not None:
        if patch.tissue is None:
            raise ValueError(f"cascade patch {patch.index} has no tissue mask")
        files[MASK_SUFFIX] = encode_png(patch.tissue)
    if spec.format == "tar":
        meta = spec.manifest_line(patch.index)
        files[".json"] = json.dumps(meta, sort_keys=True).encode()
    return files


def _write_tar(spec: DatasetSpec, final: Path, patches: Iterable[Patch]) -> None:
    with atomic_path(final) as tmp, open(tmp, "wb") as f:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for patch in patches:
                files = _files(spec, patch)
                for suffix in member_suffixes(spec):
                    _tar_member(tar, spec.key(patch.index) + suffix, files[suffix])
        f.flush()
        os.fsync(f.fileno())


def _write_png_folder(spec: DatasetSpec, final: Path, patches: Iterable[Patch]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        for patch in patches:
            for suffix, data in _files(spec, patch).items():
                with open(tmp / (spec.key(patch.index) + suffix), "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
        os.chmod(tmp, 0o755)
        _fsync_dir(tmp)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_shard(spec: DatasetSpec, shard: int, out: Path, patches: Iterable[Patch]) -> Path:
    """Write one whole shard from its patches (in index order); returns its final path."""
    final = out / spec.shard_name(shard)
    if spec.format == "tar":
        _write_tar(spec, final, patches)
    else:
        _write_png_folder(spec, final, patches)
    _fsync_dir(out)
    return final


def member_suffixes(spec: DatasetSpec) -> tuple[str, ...]:
    """A patch's files in a shard, by suffix, in the order a whole shard lists them (a
    tar's order of writing; a folder's sorted names)."""
    mask = (MASK_SUFFIX,) if spec.cascade is not None else ()
    if spec.format == "tar":
        return (".png", *mask, ".json")
    return tuple(sorted((".png", *mask)))


def shard_members(spec: DatasetSpec, shard: int) -> list[str]:
    """The file names a whole shard holds, in order."""
    suffixes = member_suffixes(spec)
    return [spec.key(i) + s for i in spec.shard_indices(shard) for s in suffixes]


def _present_members(path: Path) -> list[str]:
    if path.is_dir():
        return sorted(p.name for p in path.iterdir())
    try:
        with tarfile.open(path, mode="r:") as tar:
            return tar.getnames()
    except (tarfile.TarError, OSError) as exc:
        raise GigasynthError(
            f"shard {path} is unreadable ({exc}); delete it and run again"
        ) from None


def shard_is_whole(spec: DatasetSpec, shard: int, out: Path) -> bool:
    """Whether the shard is present under its final name; an error if it is damaged."""
    path = out / spec.shard_name(shard)
    if not path.exists():
        return False
    if _present_members(path) != shard_members(spec, shard):
        raise GigasynthError(
            f"shard {path} does not hold its {len(spec.shard_indices(shard))} patches; "
            "delete it and run again"
        )
    return True


def complete_shards(spec: DatasetSpec, out: Path) -> set[int]:
    """Shards present under their final names, each checked to hold exactly its files."""
    return {shard for shard in range(spec.shards) if shard_is_whole(spec, shard, out)}


def remove_temporaries(out: Path) -> int:
    """Delete partial shards a killed run left behind; returns how many."""
    leftovers = list(out.glob(TEMP_GLOB))
    for path in leftovers:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return len(leftovers)
