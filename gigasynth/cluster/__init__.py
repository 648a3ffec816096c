"""Dask and devices, their one owner: client set-up (`connect`), task resources and
threads, device choice (`devices`), the worker's model and allocator."""

from gigasynth.cluster.client import connect, default_workers, task_resources, task_threads
from gigasynth.cluster.devices import (
    choose_device,
    gpu_available,
    pick_device,
    worker_device,
    workers_have_gpu,
)
from gigasynth.cluster.worker import steady_allocator, worker_model

__all__ = [
    "choose_device",
    "connect",
    "default_workers",
    "gpu_available",
    "pick_device",
    "steady_allocator",
    "task_resources",
    "task_threads",
    "worker_device",
    "worker_model",
    "workers_have_gpu",
]
