"""A Dask client: an embedded LocalCluster by default, or an existing scheduler.

Workers with a GPU advertise the resource {"GPU": 1}; when any worker of the cluster
does, tile tasks ask for it so that they never land on a CPU-only worker.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from distributed import Client, LocalCluster, WorkerPlugin

from gigasynth.errors import GigasynthError

CONNECT_TIMEOUT_S = 5
GPU = "GPU"
_ADDRESS = re.compile(r"(tcp|tls|inproc|ucx)://[^\s/]+")


class TorchThreads(WorkerPlugin):
    """Split the machine's cores between worker processes instead of oversubscribing."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def setup(self, worker) -> None:
        torch.set_num_threads(self.threads)


def _quiet_dask_logs() -> None:
    """Dask logs connection retries and shutdown chatter at WARNING: keep stderr one line."""
    for name in ("distributed", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def connect(
    scheduler: str | None = None, workers: int = 1, processes: bool | None = None
) -> Iterator[Client]:
    """A client to `scheduler`, or to a new LocalCluster of `workers` workers (closed after).

    An embedded cluster runs one worker in this process (threads: no start-up cost, no
    copies); several workers run as processes, each with its share of the cores. Its
    HTTP endpoint takes a free loopback port (never a "port in use" warning on stderr).
    """
    _quiet_dask_logs()
    if scheduler is not None:
        if not _ADDRESS.fullmatch(scheduler):
            raise GigasynthError(f"scheduler address {scheduler!r} is not tcp://HOST:PORT")
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise GigasynthError(
                f"cannot reach the Dask scheduler at {scheduler} within "
                f"{CONNECT_TIMEOUT_S} s ({reason})"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    if workers < 1:
        raise GigasynthError(f"--workers must be at least 1, not {workers}")
    processes = workers > 1 if processes is None else processes
    resources = {GPU: 1} if torch.cuda.is_available() else None
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=processes,
        dashboard_address="127.0.0.1:0", resources=resources, silence_logs=logging.ERROR,
    )
    client = Client(cluster, set_as_default=False)
    try:
        if processes:
            client.register_plugin(TorchThreads(max(1, (os.cpu_count() or 1) // workers)))
        yield client
    finally:
        client.close()
        cluster.close()


def task_resources(client: Client) -> dict[str, int] | None:
    """{"GPU": 1} when some worker of the cluster advertises a GPU, else None."""
    workers = client.scheduler_info().get("workers", {})
    if any(info.get("resources", {}).get(GPU) for info in workers.values()):
        return {GPU: 1}
    return None
