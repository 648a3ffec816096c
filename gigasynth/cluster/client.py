"""Dask clients, their one owner: an embedded LocalCluster by default, or an existing
scheduler; and what resources and threads a task asks for on a client's cluster.

Workers with a GPU advertise the resource {"GPU": 1}; when any worker of the cluster
does, tasks ask for it so that they never land on a CPU-only worker.
"""

from __future__ import annotations

import logging
import os
import re
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster

from gigasynth.cluster.devices import GPU, gpu_available, workers_have_gpu
from gigasynth.cluster.worker import steady_allocator
from gigasynth.errors import FieldError, GigasynthError

CONNECT_TIMEOUT_S = 5
_ADDRESS = re.compile(r"(tcp|tls|inproc|ucx)://[^\s/]+")
# Intra-op threads per task for the clients of embedded clusters made by `connect`.
_embedded: weakref.WeakKeyDictionary[Client, int | None] = weakref.WeakKeyDictionary()


def default_workers() -> int:
    """Parallel tile tasks of the embedded cluster: one per core, or one for the GPU."""
    return 1 if gpu_available() else os.cpu_count() or 1


def threads_per_task(workers: int) -> int | None:
    """Intra-op threads for each of `workers` parallel tasks (None: leave torch's setting).

    The cores are split among the tasks, never oversubscribed: parallel tiles scale
    better than threads inside one small convolution (and much better on a busy
    machine, where threads waiting at OpenMP barriers spin). OMP_NUM_THREADS wins.
    """
    if "OMP_NUM_THREADS" in os.environ:
        return None
    return max(1, (os.cpu_count() or 1) // workers)


def _quiet_dask_logs() -> None:
    """Keep stderr to one line: Dask logs connection retries, shutdown chatter and every
    failed task with its traceback, while the failure also reaches the caller as the
    task's exception (turned into one GigasynthError line where it is the user's)."""
    for name in ("distributed", "tornado"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


@contextmanager
def connect(
    scheduler: str | None = None,
    workers: int = 1,
    *,
    processes: bool = False,
    wait_for_worker_s: float | None = None,
) -> Iterator[Client]:
    """A client to `scheduler`, or to a new LocalCluster running `workers` tasks at once.

    The embedded cluster is by default one worker in this process with `workers`
    threads: torch releases the GIL, so tiles run in parallel without start-up cost,
    pickling or a second copy of the model; it advertises a GPU where this machine has
    one. `processes=True` makes it `workers` single-threaded worker processes instead
    (the dataset's, as before: Dask starts them with one torch thread each; they
    advertise no GPU, since they would share this machine's one). Its HTTP endpoint takes
    a free loopback port (never a "port in use" warning on stderr). The cluster is closed
    on exit.

    `wait_for_worker_s`: with a scheduler, wait that long for a first worker (refused
    with one line if none comes), for callers that decide from the workers present.
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
            if wait_for_worker_s is not None:
                try:
                    client.wait_for_workers(1, timeout=wait_for_worker_s)
                except TimeoutError:
                    raise GigasynthError(
                        f"the Dask scheduler {scheduler} has no workers (waited "
                        f"{wait_for_worker_s:g} s)"
                    ) from None
            yield client
        finally:
            client.close()
        return
    if workers < 1:
        raise FieldError(f"[workers] must be at least 1, not {workers}")
    if processes:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.CRITICAL,
        )
    else:
        steady_allocator()  # the workers are threads of this process
        cluster = LocalCluster(
            n_workers=1,
            threads_per_worker=workers,
            processes=False,
            dashboard_address="127.0.0.1:0",
            resources={GPU: 1} if gpu_available() else None,
            silence_logs=logging.CRITICAL,
        )
    client = Client(cluster, set_as_default=False)
    if not processes:
        _embedded[client] = threads_per_task(workers)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def task_threads(client: Client) -> int | None:
    """Torch threads a tile task should use: a share of the cores on an embedded cluster,
    None (the worker's own setting) on any other cluster."""
    return _embedded.get(client)


def task_resources(client: Client) -> dict[str, int] | None:
    """{"GPU": 1} when some worker of the cluster advertises a GPU, else None."""
    return {GPU: 1} if workers_have_gpu(client) else None
