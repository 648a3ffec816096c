"""gigasynth.cluster, the one owner of Dask clients and devices: the embedded clusters,
connecting to a scheduler, task resources and threads, and which device work runs on."""

from __future__ import annotations

import os

import pytest
import torch
from distributed import Client, LocalCluster

from gigasynth.cluster import (
    choose_device,
    connect,
    pick_device,
    task_resources,
    task_threads,
    worker_device,
    workers_have_gpu,
)
from gigasynth.cluster.client import threads_per_task
from gigasynth.errors import GigasynthError

GPU_HERE = torch.cuda.is_available()


@pytest.fixture(scope="module")
def gpu_cluster():
    """A scheduler whose one (thread) worker advertises a GPU, as `dask worker
    --resources GPU=1` does."""
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        dashboard_address="127.0.0.1:0",
        resources={"GPU": 1},
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def cpu_cluster():
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        yield cluster


def test_local_device_choice():
    assert pick_device("auto") == pick_device(None) == worker_device()
    assert worker_device().type == ("cuda" if GPU_HERE else "cpu")
    assert pick_device("cpu") == torch.device("cpu")
    assert choose_device("auto") == worker_device().type and choose_device("cpu") == "cpu"
    with pytest.raises(GigasynthError, match="unknown device 'bogus'"):
        pick_device("bogus")
    if not GPU_HERE:
        with pytest.raises(GigasynthError, match="no CUDA device is available"):
            choose_device("cuda")


def test_device_on_a_cluster_follows_its_workers(gpu_cluster, cpu_cluster):
    with (
        connect(gpu_cluster.scheduler_address) as gpu,
        connect(cpu_cluster.scheduler_address) as cpu,
    ):
        assert workers_have_gpu(gpu) and not workers_have_gpu(cpu)
        assert task_resources(gpu) == {"GPU": 1} and task_resources(cpu) is None
        assert choose_device("auto", gpu) == "cuda" and choose_device(None, cpu) == "cpu"
        assert choose_device("cpu", gpu) == "cpu"
        with pytest.raises(GigasynthError, match="no Dask worker advertises the resource GPU"):
            choose_device("cuda", cpu)
        # Not an embedded cluster: tasks keep their worker's own thread setting.
        assert task_threads(gpu) is None


def test_embedded_clusters(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with connect(None, workers=2) as client:  # threads of this process
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        assert [w["nthreads"] for w in workers] == [2]
        assert (task_resources(client) is not None) == GPU_HERE
        assert task_threads(client) == threads_per_task(2) == max(1, (os.cpu_count() or 1) // 2)
        assert client.submit(os.getpid, pure=False).result() == os.getpid()
    with connect(None, workers=2, processes=True) as client:  # the dataset's
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        assert sorted(w["nthreads"] for w in workers) == [1, 1]
        assert task_resources(client) is None and task_threads(client) is None
        assert client.submit(os.getpid, pure=False).result() != os.getpid()
    with (
        pytest.raises(GigasynthError, match="workers must be at least 1, not 0"),
        connect(None, workers=0),
    ):
        pass


def test_scheduler_refusals_are_one_line():
    with pytest.raises(GigasynthError, match="is not tcp://HOST:PORT"), connect("localhost"):
        pass
    with LocalCluster(
        n_workers=0, processes=False, protocol="tcp://", dashboard_address="127.0.0.1:0"
    ) as empty:
        with (
            pytest.raises(GigasynthError, match="has no workers"),
            connect(empty.scheduler_address, wait_for_worker_s=0.5),
        ):
            pass
        # Without a wait the client is handed over as it is (the engine's tasks queue).
        with connect(empty.scheduler_address) as client:
            assert isinstance(client, Client) and not workers_have_gpu(client)
