"""Reading a dataset folder back: a torch Dataset of (image tensor, metadata) for both formats."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from gigasynth.dataset.folder import MANIFEST, read_dataset_json
from gigasynth.errors import GigasynthError


def read_manifest(folder: str | Path) -> list[dict[str, Any]]:
    """The manifest records of a dataset folder, in index order."""
    path = Path(folder) / MANIFEST
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise GigasynthError(f"cannot read {path}: {exc}") from None


def _tar_index(path: Path) -> dict[str, tuple[int, int]]:
    """Member name -> (data offset, size) of a tar shard, for reads without unpacking."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            return {m.name: (m.offset_data, m.size) for m in tar.getmembers()}
    except (tarfile.TarError, OSError) as exc:
        raise GigasynthError(f"cannot read shard {path}: {exc}") from None


class SyntheticPatches(torch.utils.data.Dataset):
    """Patches of a finished `gigasynth dataset` folder (PNG folders or tar shards).

    Item k is `(image, metadata)`: image a float32 tensor (3, H, W) in [0, 1] (or
    `transform(image)`), metadata the patch's manifest record; a cascade patch's tissue
    mask is `tissue_mask(k)`. A folder whose run has
    not finished is refused unless `allow_incomplete` (then: the patches made so far).
    """

    def __init__(
        self,
        folder: str | Path,
        transform: Callable[[torch.Tensor], Any] | None = None,
        allow_incomplete: bool = False,
    ) -> None:
        self.folder = Path(folder)
        self.description = read_dataset_json(self.folder)
        if not self.description.get("complete") and not allow_incomplete:
            raise GigasynthError(
                f"{self.folder} is an unfinished dataset; run its command again to finish it "
                "(or pass allow_incomplete=True)"
            )
        self.records = read_manifest(self.folder)
        self.format = self.description["settings"]["format"]
        self.transform = transform
        self._tar_indexes: dict[str, dict[str, tuple[int, int]]] = {}

    def __len__(self) -> int:
        return len(self.records)

    def _png_bytes(self, record: dict[str, Any], member: str | None = None) -> bytes:
        """The bytes of the patch's PNG, or of `member` of its shard (a relative path in
        a png dataset, a tar member's name in a tar one)."""
        if self.format == "png":
            return (self.folder / (member or record["file"])).read_bytes()
        path = self.folder / record["file"]
        index = self._tar_indexes.get(record["file"])
        if index is None:
            index = self._tar_indexes.setdefault(record["file"], _tar_index(path))
        name = member or f"{record['key']}.png"
        if name not in index:
            raise GigasynthError(f"shard {path} has no {name}")
        offset, size = index[name]
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(size)

    def __getitem__(self, k: int) -> tuple[Any, dict[str, Any]]:
        record = self.records[k]
        try:
            with Image.open(io.BytesIO(self._png_bytes(record))) as im:
                rgb = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise GigasynthError(
                f"cannot read patch {record['index']} ({record['file']}): {exc}"
            ) from None
        if [rgb.shape[1], rgb.shape[0]] != record["size"]:
            raise GigasynthError(
                f"patch {record['index']} is {rgb.shape[1]}x{rgb.shape[0]}, "
                f"its record says {record['size']}"
            )
        image = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0
        return (self.transform(image) if self.transform else image), dict(record)

    def tissue_mask(self, k: int) -> np.ndarray:
        """Item k's tissue mask, (H, W) bool (True = tissue), for a cascade dataset's
        patches (each is written beside its image)."""
        record = self.records[k]
        if "mask" not in record:
            raise GigasynthError(
                f"patch {record['index']} has no tissue mask (only cascade datasets have one)"
            )
        try:
            with Image.open(io.BytesIO(self._png_bytes(record, record["mask"]))) as im:
                return np.asarray(im.convert("L")) >= 128
        except (UnidentifiedImageError, OSError) as exc:
            raise GigasynthError(
                f"cannot read the tissue mask of patch {record['index']} ({record['mask']}): {exc}"
            ) from None
