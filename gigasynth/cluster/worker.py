"""What a worker keeps between tasks: the model, loaded once per checkpoint and hash,
and an allocator that keeps the memory of one task for the next.

Tasks carry only the checkpoint reference and its hash (a few bytes), never weights.
A worker loads the checkpoint on its first task, checks the hash (a checkpoint that
changed on disk mid-job would break invariant I5) and reuses the model afterwards: the
process's one model cache, `gigasynth.checkpoint.cached_checkpoint`, on the worker's
device (`gigasynth.cluster.devices.worker_device`).

Start-up (`steady_allocator`; `dask worker --preload gigasynth.cluster.worker` runs it
in a worker process, `connect` in the process of an embedded cluster): every tile task
allocates the same large tensors again. glibc hands blocks over its mmap threshold
back to the kernel on free and trims its heaps, so each task faults the same memory in
again, page by page (measured: 637,000 minor faults per 1024 px tile task of the tiny
model, 12 % of its CPU time). The threshold is fixed at its maximum and trimming
deferred, and torch backs its large blocks with transparent huge pages
(THP_MEM_ALLOC_ENABLE: read at torch's first allocation, so set before it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any

from gigasynth.checkpoint import HashMismatch, cached_checkpoint
from gigasynth.cluster.devices import worker_device
from gigasynth.errors import GigasynthError
from gigasynth.models import DiffNCA


def worker_model(checkpoint: str, sha256: str) -> DiffNCA:
    """The model of `checkpoint` on this worker's device, loaded once per (checkpoint, hash)."""
    try:
        return cached_checkpoint(checkpoint, sha256, worker_device()).model
    except HashMismatch as exc:
        raise GigasynthError(
            f"checkpoint {checkpoint} changed since the job started "
            f"(sha256 {exc.found[:16]}, expected {sha256[:16]})"
        ) from None


# glibc mallopt parameters (malloc.h) and the values set.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest on 64-bit: blocks up to it reuse the heap
TRIM_THRESHOLD = 1 << 30  # free heap top kept before it is returned to the kernel
TOP_PAD = 64 << 20  # heap growth per request: fewer brk calls


def steady_allocator() -> bool:
    """Keep freed task memory for the next task; True where glibc took the settings.

    GIGASYNTH_STEADY_MALLOC=0 leaves the allocator alone (the A/B of the benchmark).
    """
    if os.environ.get("GIGASYNTH_STEADY_MALLOC") == "0":
        return False
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    return all(
        mallopt(param, value) == 1
        for param, value in (
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (_M_TOP_PAD, TOP_PAD),
        )
    )


def dask_setup(worker: Any) -> None:
    """`dask worker --preload gigasynth.cluster.worker`: the allocator settings above."""
    steady_allocator()
