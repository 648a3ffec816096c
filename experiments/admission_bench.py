"""Admission under oversized submissions: a real `gigasynth serve` on loopback.

`--clients` clients (45) submit 50000 x 50000 jobs in 24 px tiles over their token's
quota, back to back, for `--seconds`; meanwhile one probe GETs /healthz and another
token POSTs small valid jobs, each every `--every` s. Prints p50/p99/max latency of both
probes, idle (before the burst) and under it, and how the oversized submissions were
answered. Everything stays on 127.0.0.1 and stops by itself (bounded in time and count).

    python experiments/admission_bench.py [--clients 45] [--seconds 10] [--json]
    python experiments/admission_bench.py --root /tmp/old-checkout   # another version

`--root` runs the server of another checkout (its own code, this Python); on a version
that answers slowly the in-flight requests are given up after `--timeout` s and counted
with that latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = "builtin:tiny-pathology"
SMALL = {"model": MODEL, "width": 16, "height": 16, "steps": 1, "tile": 0,
         "formats": ["ome-zarr"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_token(root: Path, data_dir: Path, name: str, *quota: str) -> str:
    out = subprocess.run([sys.executable, "-m", "gigasynth", "token", "create", "--name", name,
                          "--data-dir", str(data_dir), *quota],
                         cwd=root, capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


@contextlib.contextmanager
def server(root: Path, data_dir: Path):
    port = free_port()
    log = open(data_dir.parent / "server.log", "ab")  # noqa: SIM115
    env = {**os.environ, "GIGASYNTH_RUNNER_THREADS": "1", "GIGASYNTH_DASK_WORKERS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "gigasynth", "serve", "--port", str(port),
                             "--data-dir", str(data_dir), "--log-level", "warning"],
                            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {(data_dir.parent / 'server.log').read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def timed(call: Callable[[], Awaitable[httpx.Response]], timeout: float
                ) -> tuple[float, int]:
    """(seconds, status) of one request; a request given up after `timeout` is status 0."""
    start = time.perf_counter()
    try:
        status = (await asyncio.wait_for(call(), timeout)).status_code
    except (TimeoutError, httpx.HTTPError):
        status = 0
    return time.perf_counter() - start, status


async def probe(call: Callable[[], Awaitable[httpx.Response]], seconds: float, every: float,
                timeout: float) -> list[tuple[float, int]]:
    out = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        out.append(await timed(call, timeout))
        await asyncio.sleep(every)
    return out


async def measure(url: str, tokens: dict[str, str], args: argparse.Namespace) -> dict:
    limits = httpx.Limits(max_connections=args.clients + 8)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits) as api:
        greedy = {"Authorization": f"Bearer {tokens['greedy']}"}
        modest = {"Authorization": f"Bearer {tokens['modest']}"}
        oversized = {"model": MODEL, "width": args.size, "height": args.size,
                     "tile": args.tile, "steps": 2}

        def health() -> Awaitable[httpx.Response]:
            return api.get("/healthz")

        def small() -> Awaitable[httpx.Response]:
            return api.post("/v1/jobs", json=SMALL, headers=modest)

        def big() -> Awaitable[httpx.Response]:
            return api.post("/v1/jobs", json=oversized, headers=greedy)

        await timed(small, args.timeout)                          # warm-up
        idle = await asyncio.gather(probe(health, 2, args.every, args.timeout),
                                    probe(small, 2, args.every, args.timeout))

        async def client() -> list[tuple[float, int]]:
            out = []
            deadline = time.perf_counter() + args.seconds
            while time.perf_counter() < deadline and len(out) < args.max_requests:
                out.append(await timed(big, args.timeout))
            return out

        start = time.perf_counter()
        *clients, loaded_health, loaded_small = await asyncio.gather(
            *(client() for _ in range(args.clients)),
            probe(health, args.seconds, args.every, args.timeout),
            probe(small, args.seconds, args.every, args.timeout))
        wall = time.perf_counter() - start
    bursts = [r for c in clients for r in c]
    return {"idle": {"healthz": summary(idle[0]), "small_post": summary(idle[1])},
            "loaded": {"healthz": summary(loaded_health), "small_post": summary(loaded_small),
                       "oversized": summary(bursts)},
            "oversized_per_s": round(len(bursts) / wall, 1), "wall_s": round(wall, 1)}


def summary(results: list[tuple[float, int]]) -> dict:
    ms = np.array([s for s, _ in results]) * 1000
    statuses: dict[str, int] = {}
    for _, status in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {"n": len(results), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "max_ms": round(float(ms.max()), 1), "statuses": statuses}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=45)
    p.add_argument("--seconds", type=float, default=10.0, help="length of the burst")
    p.add_argument("--every", type=float, default=0.1, help="s between probe requests")
    p.add_argument("--size", type=int, default=50_000, help="side of the oversized jobs")
    p.add_argument("--tile", type=int, default=24)
    p.add_argument("--timeout", type=float, default=60.0, help="give a request up after")
    p.add_argument("--max-requests", type=int, default=2000, help="per burst client")
    p.add_argument("--root", type=Path, default=ROOT, help="checkout whose server runs")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="admission-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        tokens = {"greedy": create_token(args.root, data_dir, "greedy"),
                  "modest": create_token(args.root, data_dir, "modest",
                                         "--max-concurrent", "100000")}
        with server(args.root, data_dir) as url:
            result = asyncio.run(measure(url, tokens, args))
    result["setup"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result["cpus"] = os.cpu_count()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for phase in ("idle", "loaded"):
        for name, s in result[phase].items():
            print(f"{phase:6} {name:10} n={s['n']:5}  p50 {s['p50_ms']:8.1f} ms  "
                  f"p99 {s['p99_ms']:8.1f} ms  max {s['max_ms']:8.1f} ms  {s['statuses']}")
    print(f"oversized submissions answered: {result['oversized_per_s']}/s over "
          f"{result['wall_s']} s from {args.clients} clients")


if __name__ == "__main__":
    main()
