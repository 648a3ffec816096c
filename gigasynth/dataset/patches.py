"""Synthetic patches from a checkpoint, each a pure function of (checkpoint, settings, index).

A patch is denoised in its canonical batch (`DatasetSpec.group_of`): on CPU the small
conditioning matmuls round differently for different batch sizes (measured: up to
1.3e-5 after three DDIM steps of the tiny preset), so which patches share a batch is
fixed by the settings, never by scheduling. With batch 1 (the default) every patch is
computed alone.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from gigasynth.checkpoint import (
    Checkpoint,
    HashMismatch,
    cached_checkpoint,
    declared_kind,
    load_checkpoint,
)
from gigasynth.cluster import choose_device, gpu_available
from gigasynth.dataset.spec import DatasetSpec
from gigasynth.errors import GigasynthError
from gigasynth.images import to_uint8
from gigasynth.models import Denoiser
from gigasynth.sampling import SampleRequest, generate

NCA_KINDS = ("diff-nca", "fourier-diff-nca")


@dataclass
class Patch:
    """One synthetic patch: (H, W, 3) uint8 RGB and its provenance record; a cascade
    patch also has its tissue mask, (H, W) bool."""

    index: int
    image: np.ndarray
    metadata: dict[str, Any]
    tissue: np.ndarray | None = None


def prepare_device(device: str) -> None:
    """Patches on cuda: a GPU must be there, and cuDNN picks deterministic kernels."""
    if device == "cuda":
        if not gpu_available():
            raise GigasynthError("this dataset is generated on cuda, but no GPU is available")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def load_model(ref: str, device: str = "cpu", sha256: str | None = None) -> Checkpoint:
    """An NCA checkpoint on `device`, in the layout patches are computed in.

    Both Diff-NCA and FourierDiff-NCA make fixed-size patches (a patch is a whole
    image); other denoisers (the UNet baseline) and non-checkpoints are refused. With
    `sha256` the weights must have that hash, and the model comes from the process's
    model cache (Dask workers load it once for all their shards).
    """
    kind = declared_kind(ref)
    if kind is not None and kind not in NCA_KINDS:
        raise GigasynthError(
            f"checkpoint {ref} is a {kind!r} model; datasets need a Diff-NCA or "
            "FourierDiff-NCA checkpoint"
        )
    prepare_device(device)
    if sha256 is None:
        ckpt = load_checkpoint(ref, device)
        ckpt.model = ckpt.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return ckpt
    try:
        return cached_checkpoint(ref, sha256, device, channels_last=True)
    except HashMismatch as exc:
        raise GigasynthError(
            f"checkpoint {ref} has hash {exc.found[:16]}, the dataset was made with {sha256[:16]}"
        ) from None


def generate_group(model: Denoiser, spec: DatasetSpec, start: int) -> np.ndarray:
    """The canonical batch starting at patch `start`: (batch, H, W, 3) uint8."""
    seeds = [spec.patch_seed(i) for i in spec.group_of(start)]
    request = SampleRequest(spec.sampler, spec.steps, spec.eta)
    x = generate(model, spec.height, spec.width, seeds, request, spec.device)
    return to_uint8(x)


def generate_patches(model: Denoiser, spec: DatasetSpec, indices: Iterable[int]) -> Iterator[Patch]:
    """Patches for `indices` in the given order; a batch is computed once for neighbours."""
    group_start, images = -1, np.empty(0)
    for index in indices:
        if not 0 <= index < spec.count:
            raise GigasynthError(f"patch index {index} is outside 0..{spec.count - 1}")
        start = spec.group_of(index).start
        if start != group_start:
            group_start, images = start, generate_group(model, spec, start)
        yield Patch(index, images[index - start], spec.record(index))


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of (H, W, 3) uint8, or of an (H, W) bool mask as a grey image (white =
    True): the same image always gives the same bytes."""
    if image.dtype == np.bool_:
        image = np.where(image, 255, 0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def iter_patches(
    checkpoint: str,
    indices: int | Iterable[int],
    size: int | tuple[int, int],
    seed: int = 0,
    sampler: str = "ddim",
    steps: int = 50,
    eta: float = 0.0,
    batch: int = 1,
    device: str | None = None,
) -> Iterator[Patch]:
    """Synthetic patches for a notebook: `indices` is a count or any indices.

    The same arguments give the same patches as `gigasynth dataset` with those
    settings (on the same kind of device). `size` is a side or (width, height).
    """
    device = choose_device(device)
    chosen = range(indices) if isinstance(indices, int) else list(indices)
    if len(chosen) == 0:
        return
    width, height = (size, size) if isinstance(size, int) else size
    ckpt = load_model(checkpoint, device)
    spec = DatasetSpec.for_model(
        ckpt.config,
        ckpt.sha256,
        seed=seed,
        count=max(chosen) + 1,
        width=width,
        height=height,
        sampler=sampler,
        steps=steps,
        eta=eta,
        batch=batch,
        format="png",
        shard_size=batch,
        device=device,
    )
    yield from generate_patches(ckpt.model, spec, chosen)
