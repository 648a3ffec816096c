"""Admission under oversized submissions: a real `gigasynth serve` on loopback.

`--clients` clients (45) submit 50000 x 50000 jobs in 24 px tiles over their token's
quota, back to back, for `--seconds`; meanwhile one probe GETs /healthz and another
token POSTs small valid jobs, each every `--every` s. Prints p50/p99/max latency of both
probes, idle (before the burst) and under it, and how the oversized submissions were
answered. Everything stays on 127.0.0.1 and stops by itself (bounded in time and count).

The burst runs in a process of its own, as another client's would: the probes measure
the server, not the load generator. With `--same-process` the probes share the burst's
event loop and HTTP client (this script's method before 2026-12-02): on a loaded 2-core
machine that loop, busy with 45 clients' requests, delays each probe's own request and
response by hundreds of ms, which that method counted as server latency.

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
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = "builtin:tiny-pathology"
SMALL = {"model": MODEL, "width": 16, "height": 16, "steps": 1, "tile": 0, "formats": ["ome-zarr"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_token(root: Path, data_dir: Path, name: str, *quota: str) -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gigasynth",
            "token",
            "create",
            "--name",
            name,
            "--data-dir",
            str(data_dir),
            *quota,
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().splitlines()[-1]


@contextlib.contextmanager
def server(
    root: Path, data_dir: Path, settings: dict[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    """A `gigasynth serve` of the checkout at `root` on a free loopback port, with these
    GIGASYNTH_* settings over the environment: (url, pid), stopped on exit."""
    port = free_port()
    log = open(data_dir.parent / "server.log", "ab")  # noqa: SIM115
    cmd = [sys.executable, "-m", "gigasynth", "serve", "--port", str(port)]
    cmd += ["--data-dir", str(data_dir), "--log-level", "warning"]
    env = {**os.environ, **(settings or {})}
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
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
        yield url, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def timed(call: Callable[[], Awaitable[httpx.Response]], timeout: float) -> tuple[float, int]:
    """(seconds, status) of one request; a request given up after `timeout` is status 0."""
    start = time.perf_counter()
    try:
        status = (await asyncio.wait_for(call(), timeout)).status_code
    except (TimeoutError, httpx.HTTPError):
        status = 0
    return time.perf_counter() - start, status


async def probe(
    call: Callable[[], Awaitable[httpx.Response]], seconds: float, every: float, timeout: float
) -> list[tuple[float, int]]:
    out = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        out.append(await timed(call, timeout))
        await asyncio.sleep(every)
    return out


def oversized_body(args: argparse.Namespace) -> dict:
    return {"model": MODEL, "width": args.size, "height": args.size, "tile": args.tile, "steps": 2}


async def burst(
    url: str, token: str, args: argparse.Namespace
) -> tuple[list[tuple[float, int]], float]:
    """`args.clients` clients submitting oversized jobs back to back for `args.seconds`:
    (latency, status) of every submission, and the wall time."""
    limits = httpx.Limits(max_connections=args.clients + 8)
    headers = {"Authorization": f"Bearer {token}"}
    body = oversized_body(args)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits) as api:

        def big() -> Awaitable[httpx.Response]:
            return api.post("/v1/jobs", json=body, headers=headers)

        async def client() -> list[tuple[float, int]]:
            out = []
            deadline = time.perf_counter() + args.seconds
            while time.perf_counter() < deadline and len(out) < args.max_requests:
                out.append(await timed(big, args.timeout))
            return out

        start = time.perf_counter()
        clients = await asyncio.gather(*(client() for _ in range(args.clients)))
        return [r for c in clients for r in c], time.perf_counter() - start


def burst_process(url: str, token: str, args: argparse.Namespace) -> subprocess.Popen:
    """This script in `--burst-of URL` mode: the burst in another process (the token in
    its environment, its results as JSON on stdout once done)."""
    argv = [sys.executable, __file__, "--burst-of", url]
    for name in ("clients", "seconds", "size", "tile", "timeout", "max_requests"):
        argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, text=True, env={**os.environ, "BURST_TOKEN": token}
    )


async def measure(url: str, tokens: dict[str, str], args: argparse.Namespace) -> dict:
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout) as api:
        modest = {"Authorization": f"Bearer {tokens['modest']}"}

        def health() -> Awaitable[httpx.Response]:
            return api.get("/healthz")

        def small() -> Awaitable[httpx.Response]:
            return api.post("/v1/jobs", json=SMALL, headers=modest)

        await timed(small, args.timeout)  # warm-up
        idle = await asyncio.gather(
            probe(health, 2, args.every, args.timeout), probe(small, 2, args.every, args.timeout)
        )
        before = await server_buckets(api, modest)
        if args.same_process:
            (bursts, wall), loaded_health, loaded_small = await asyncio.gather(
                burst(url, tokens["greedy"], args),
                probe(health, args.seconds, args.every, args.timeout),
                probe(small, args.seconds, args.every, args.timeout),
            )
            inside = server_side(before, await server_buckets(api, modest))
        else:
            proc = burst_process(url, tokens["greedy"], args)
            await asyncio.sleep(args.ramp)  # the other process starts and connects
            probes = max(1.0, args.seconds - args.ramp)
            loaded_health, loaded_small = await asyncio.gather(
                probe(health, probes, args.every, args.timeout),
                probe(small, probes, args.every, args.timeout),
            )
            out, _ = await asyncio.to_thread(proc.communicate)
            if proc.returncode != 0:
                raise SystemExit(f"the burst process failed ({proc.returncode})")
            done = json.loads(out)
            bursts, wall = [tuple(r) for r in done["results"]], done["wall_s"]
        inside = server_side(before, await server_buckets(api, modest))
    return {
        "idle": {"healthz": summary(idle[0]), "small_post": summary(idle[1])},
        "loaded": {
            "healthz": summary(loaded_health),
            "small_post": summary(loaded_small),
            "oversized": summary(bursts),
        },
        "loaded_inside_server": inside,
        "oversized_per_s": round(len(bursts) / wall, 1),
        "wall_s": round(wall, 1),
    }


SERVER_SERIES = {"healthz": ("GET", "/healthz", "200"), "small_post": ("POST", "/v1/jobs", "202")}


async def server_buckets(
    api: httpx.AsyncClient, headers: dict[str, str]
) -> dict[str, dict[float, float]]:
    """The server's own latency histogram (gigasynth_http_request_duration_seconds, time
    inside the app) of each probe's requests: {probe: {le: cumulative count}}."""
    text = (await api.get("/metrics", headers=headers)).text
    out: dict[str, dict[float, float]] = {name: {} for name in SERVER_SERIES}
    for line in text.splitlines():
        if not line.startswith("gigasynth_http_request_duration_seconds_bucket{"):
            continue
        labels = dict(
            part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(",")
        )
        labels = {k: v.strip('"') for k, v in labels.items()}
        for name, (method, route, status) in SERVER_SERIES.items():
            if (labels["method"], labels["route"], labels["status"]) == (method, route, status):
                out[name][float(labels["le"])] = float(line.rsplit(" ", 1)[1])
    return out


def server_side(
    before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]
) -> dict[str, dict]:
    """Per probe, from the histogram's change over the burst: the number of requests and
    the bucket bounds (s) that hold its p50 and p99 (the server cannot see a request's
    wait before the app gets it, so this is a lower bound of what a client sees)."""
    out = {}
    for name, now in after.items():
        counts = sorted((le, n - before[name].get(le, 0.0)) for le, n in now.items())
        total = counts[-1][1] if counts else 0.0

        def bound(q: float, counts: list = counts, total: float = total) -> float | None:
            return next((le for le, n in counts if n >= q * total), None) if total else None

        out[name] = {"n": int(total), "p50_le_s": bound(0.5), "p99_le_s": bound(0.99)}
    return out


def summary(results: list[tuple[float, int]]) -> dict:
    ms = np.array([s for s, _ in results]) * 1000
    statuses: dict[str, int] = {}
    for _, status in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "n": len(results),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
        "statuses": statuses,
    }


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
    p.add_argument(
        "--same-process",
        action="store_true",
        help="probe from the burst's own event loop (the old method)",
    )
    p.add_argument(
        "--ramp", type=float, default=1.0, help="s the probes wait for the burst process to start"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--burst-of", metavar="URL", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.burst_of:  # the burst process: token from the environment, JSON out
        results, wall = asyncio.run(burst(args.burst_of, os.environ["BURST_TOKEN"], args))
        print(json.dumps({"results": results, "wall_s": wall}))
        return
    with tempfile.TemporaryDirectory(prefix="admission-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        tokens = {
            "greedy": create_token(args.root, data_dir, "greedy"),
            "modest": create_token(args.root, data_dir, "modest", "--max-concurrent", "100000"),
        }
        one_worker = {"GIGASYNTH_RUNNER_THREADS": "1", "GIGASYNTH_DASK_WORKERS": "1"}
        with server(args.root, data_dir, one_worker) as (url, _):
            result = asyncio.run(measure(url, tokens, args))
    result["setup"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result["cpus"] = os.cpu_count()
    result["load_average"] = [round(x, 1) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for phase in ("idle", "loaded"):
        for name, s in result[phase].items():
            print(
                f"{phase:6} {name:10} n={s['n']:5}  p50 {s['p50_ms']:8.1f} ms  "
                f"p99 {s['p99_ms']:8.1f} ms  max {s['max_ms']:8.1f} ms  {s['statuses']}"
            )
    for name, s in result["loaded_inside_server"].items():
        print(
            f"loaded {name:10} n={s['n']:5}  inside the server: p50 <= {s['p50_le_s']} s, "
            f"p99 <= {s['p99_le_s']} s (histogram buckets)"
        )
    print(
        f"oversized submissions answered: {result['oversized_per_s']}/s over "
        f"{result['wall_s']} s from {args.clients} clients "
        f"({'same process as' if args.same_process else 'another process than'} the "
        f"probes); load average {result['load_average']} on {result['cpus']} CPUs"
    )


if __name__ == "__main__":
    main()
