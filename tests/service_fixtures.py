"""Service test helpers: a data dir with a micro model, tokens, finished slides, servers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import numpy as np
import torch
import zarr

from gigasynth.checkpoint import save_checkpoint
from gigasynth.models import build_model
from gigasynth_service.config import ServiceConfig
from gigasynth_service.paths import JobPaths, new_job_id
from gigasynth_service.store import JobStore
from gigasynth_service.tokens import create_token, hash_token
from tests.conftest import MICRO, ROOT

MICRO_MODEL = "micro"
OPERATOR = "operator-" + "0" * 32  # the tests' GIGASYNTH_METRICS_TOKEN
LONG_MODEL = "micro-400"


def write_micro_model(data_dir: Path) -> Path:
    """The MICRO Diff-NCA (seeded weights) as checkpoint folder `models/micro`."""
    torch.manual_seed(0)
    model = build_model(MICRO, zero_output=False).eval()
    return save_checkpoint(data_dir / "models" / MICRO_MODEL, model, MICRO, {"mpp": 0.5})


def write_long_micro_model(data_dir: Path) -> Path:
    """MICRO with T = 400 diffusion steps as `models/micro-400`: room for jobs that must last.

    Its weights differ from micro's (another seed): the engine's worker cache tells models
    apart by the weights' hash alone, so equal weights under two configs would collide.
    """
    torch.manual_seed(1)
    config = replace(MICRO, timesteps=400)
    model = build_model(config, zero_output=False).eval()
    return save_checkpoint(data_dir / "models" / LONG_MODEL, model, config)


def service_config(data_dir: Path, **overrides: object) -> ServiceConfig:
    """The settings of a test's app: the defaults, the operator's metrics token, overrides."""
    return ServiceConfig(data_dir=data_dir, **{"metrics_token": OPERATOR, **overrides})


def add_token(data_dir: Path, name: str, **quotas: float) -> str:
    store = JobStore(data_dir / "jobs.sqlite3")
    try:
        return create_token(store, name, **quotas)[0]
    finally:
        store.close()


def tissue_rgb(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A (3, H, W) uint8 image that looks vaguely like H&E: pink stroma, purple nuclei."""
    rng = np.random.default_rng(seed)
    base = np.stack([np.full((height, width), c, np.float32) for c in (232, 170, 200)])
    nuclei = np.zeros((height, width), np.float32)
    for _ in range(max(4, width * height // 400)):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(2, 6)
        y0, y1 = max(0, int(cy - 3 * r)), min(height, int(cy + 3 * r) + 1)
        x0, x1 = max(0, int(cx - 3 * r)), min(width, int(cx + 3 * r) + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        nuclei[y0:y1, x0:x1] = np.maximum(nuclei[y0:y1, x0:x1], blob)
    purple = np.array([110, 60, 160], np.float32)[:, None, None]
    image = base * (1 - nuclei) + purple * nuclei
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


def write_pyramid(zarr_path: Path, level0: np.ndarray, min_side: int = 64) -> None:
    """An OME-Zarr-like pyramid `zarr_path/0/{level}`, (3, H, W) uint8, each level 2x smaller."""
    group = zarr.open_group(str(zarr_path / "0"), mode="w", zarr_format=2)
    level, index = level0, 0
    while True:
        array = group.create_array(
            str(index), shape=level.shape, chunks=(3, 128, 128), dtype="uint8"
        )
        array[:] = level
        if max(level.shape[1:]) <= min_side:
            return
        _, h, w = level.shape
        padded = np.pad(level, ((0, 0), (0, h % 2), (0, w % 2)), mode="edge").astype(np.uint16)
        level = (
            (
                padded[:, 0::2, 0::2]
                + padded[:, 1::2, 0::2]
                + padded[:, 0::2, 1::2]
                + padded[:, 1::2, 1::2]
                + 2
            )
            // 4
        ).astype(np.uint8)
        index += 1


def finished_job(
    data_dir: Path, token: str, width: int, height: int, formats: tuple[str, ...] = ("ome-zarr",)
) -> str:
    """A job recorded as succeeded, its pyramid written directly; its id."""
    store = JobStore(data_dir / "jobs.sqlite3")
    try:
        token_id = store.token_by_hash(hash_token(token)).id
        job_id = new_job_id()
        request = {
            "model": MICRO_MODEL,
            "width": width,
            "height": height,
            "seed": 3,
            "sampler": "ddim",
            "steps": 2,
            "eta": 0.0,
            "tile": 64,
            "formats": sorted(formats),
            "mpp": None,
        }
        store.add_job(job_id, token_id, request)
        store.set_state(job_id, "running")
        paths = JobPaths.of(data_dir, job_id)
        write_pyramid(paths.zarr, tissue_rgb(width, height))
        if "ome-tiff" in formats:
            paths.ome_tiff.write_bytes(b"II*\x00 stand-in tiff bytes")
        store.set_state(
            job_id, "succeeded", result={"formats": sorted(formats), "checkpoint_sha256": "ab" * 32}
        )
        return job_id
    finally:
        store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A `gigasynth serve` process on loopback."""

    process: subprocess.Popen
    url: str
    log: Path

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers run (a crash)."""
        self.process.kill()
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(
    data_dir: Path,
    extra_env: dict[str, str] | None = None,
    timeout: float = 60.0,
    log_level: str = "warning",
) -> Server:
    """Start `python -m gigasynth serve` on a free loopback port and wait for /healthz.

    Its output goes to `log`; log_level "info" includes uvicorn's access log.
    """
    port = free_port()
    log = data_dir.parent / f"server-{port}.log"
    env = {
        **os.environ,
        "GIGASYNTH_PROGRESS_INTERVAL_S": "0.1",
        "GIGASYNTH_METRICS_TOKEN": OPERATOR,
        **(extra_env or {}),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gigasynth",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--log-level",
            log_level,
        ],
        cwd=ROOT,
        env=env,
        stdout=open(log, "ab"),  # noqa: SIM115 (the server's log outlives this call)
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return Server(process, url, log)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not come up within {timeout} s:\n{log.read_text()}")


@contextlib.contextmanager
def running_server(
    data_dir: Path, extra_env: dict[str, str] | None = None, log_level: str = "warning"
) -> Iterator[Server]:
    server = start_server(data_dir, extra_env, log_level=log_level)
    try:
        yield server
    finally:
        server.stop()


def wait_for_job(
    client: httpx.Client,
    job_id: str,
    until: tuple[str, ...] = ("succeeded",),
    timeout: float = 90.0,
    predicate=None,
) -> dict:
    """Poll a job until its state is in `until` (or predicate(job) holds); fail on timeout."""
    deadline = time.monotonic() + timeout
    job: dict = {}
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job.get("state") in until or (predicate is not None and predicate(job)):
            return job
        if job.get("state") in ("failed", "cancelled") and job["state"] not in until:
            raise AssertionError(f"job {job_id} ended {job['state']}: {job.get('error')}")
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not {until} within {timeout} s: {job}")
