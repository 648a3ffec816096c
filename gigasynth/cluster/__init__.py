"""Dask for the tiled engine: client setup, GPU resources, per-worker model cache."""

from gigasynth.cluster.client import connect, default_workers, task_resources, task_threads
from gigasynth.cluster.worker import steady_allocator, worker_device, worker_model

__all__ = ["connect", "default_workers", "steady_allocator", "task_resources", "task_threads",
           "worker_device", "worker_model"]
