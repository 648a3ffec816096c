"""Device choice, its one owner: whether this machine has a GPU, which device a process,
a Dask worker or a dataset computes on, and whether a cluster's workers offer a GPU.

GPU workers advertise the Dask resource {"GPU": 1} (`dask worker --resources GPU=1`; the
embedded cluster of `connect` where this machine has one); that is the only way a
client learns that a remote worker has a GPU.
"""

from __future__ import annotations

from typing import Any

import torch

from gigasynth.errors import FieldError, GigasynthError

GPU = "GPU"  # the Dask resource a GPU worker advertises


def gpu_available() -> bool:
    """Whether this process can compute on a CUDA GPU."""
    return torch.cuda.is_available()


def pick_device(name: str | None) -> torch.device:
    """The requested device, or CUDA when present, else CPU; a clear error if unavailable."""
    if name in (None, "auto"):
        return torch.device("cuda" if gpu_available() else "cpu")
    if name.startswith("cuda") and not gpu_available():
        raise FieldError("[device] cuda requested but no CUDA device is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise GigasynthError(f"unknown device {name!r}") from None


def worker_device() -> torch.device:
    """A Dask worker's compute device: its GPU where it has one, else the CPU."""
    return pick_device(None)


def workers_have_gpu(client: Any) -> bool:
    """Whether some worker of the client's cluster advertises the resource GPU."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return any(info.get("resources", {}).get(GPU, 0) >= 1 for info in workers.values())


def choose_device(requested: str | None, client: Any | None = None) -> str:
    """The device work runs on: here (`client` None) or on the client's workers.

    "auto" (or None) is CUDA where there is a GPU (here, or on some worker), else the
    CPU. On a cluster, "cuda" needs a worker that advertises a GPU; the workers check
    their own device when they load the model.
    """
    if client is None:
        return str(pick_device(requested))
    gpu = workers_have_gpu(client)
    if requested in (None, "auto"):
        return "cuda" if gpu else "cpu"
    if requested == "cuda" and not gpu:
        raise FieldError("[device] cuda, but no Dask worker advertises the resource GPU")
    return requested
