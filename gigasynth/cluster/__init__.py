"""Dask for the tiled engine: client setup, GPU resources, per-worker model cache."""

from gigasynth.cluster.client import connect, default_workers, task_resources, threads_per_task
from gigasynth.cluster.worker import worker_device, worker_model

__all__ = ["connect", "default_workers", "task_resources", "threads_per_task", "worker_device",
           "worker_model"]
