"""Dask for the tiled engine: client setup, GPU resources, per-worker model cache."""

from gigasynth.cluster.client import connect, task_resources
from gigasynth.cluster.worker import worker_device, worker_model

__all__ = ["connect", "task_resources", "worker_device", "worker_model"]
