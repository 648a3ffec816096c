"""Layout uploads at the pixel limit against a real `gigasynth serve` on loopback (issue 27).

For each kind of small file claiming 2^26 px (the default GIGASYNTH_MAX_LAYOUT_PIXELS) and
each count in `--concurrent` (16 64), that many clients upload it at once (one thread
and connection each, released together); a sampler reads the server's RSS every 5 ms.
Prints, per run, the server's peak RSS growth over its RSS before the run, the answers'
statuses and the slowest answer:

- jpeg-bomb: 600 bytes of an 8192^2 JPEG and an end marker (libjpeg would fill the rest);
- png-cut: the first 3000 bytes of an 8192^2 PNG and its end chunk;
- png-1bit: a whole, valid 1-bit 8192^2 PNG of 18 KB (64 MB to check: the decode budget's
  slots and memory bound how many run at once, the others wait, then get 503).

    python experiments/upload_memory_bench.py [--concurrent 16 64] [--json]

The server runs with default settings in a temporary data dir and is stopped at the end.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
from admission_bench import create_token, server
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SIDE = 8192  # 8192^2 = 2^26 px


def encoded(im: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def at_limit_files() -> dict[str, tuple[bytes, str]]:
    """Each kind of upload (see the module's docstring): (bytes, Content-Type)."""
    jpeg = encoded(Image.new("L", (SIDE, SIDE), 200), "JPEG")
    png = encoded(Image.new("L", (SIDE, SIDE)), "PNG")
    valid = encoded(Image.new("1", (SIDE, SIDE), 1), "PNG", optimize=True)
    return {
        "jpeg-bomb": (jpeg[:600] + b"\xff\xd9", "image/jpeg"),
        "png-cut": (png[:3000] + png[-12:], "image/png"),
        "png-1bit": (valid, "image/png"),
    }


def uploads(url: str, token: str, data: bytes, media_type: str, n: int) -> list[tuple[int, float]]:
    """n uploads at once, one thread and connection each: (status, seconds) of each."""
    barrier = threading.Barrier(n)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": media_type}

    def one(_: int) -> tuple[int, float]:
        with httpx.Client(base_url=url, timeout=120) as http:
            http.get("/healthz")  # connected before the race starts
            barrier.wait()
            start = time.monotonic()
            status = http.post("/v1/layouts", headers=headers, content=data).status_code
            return status, time.monotonic() - start

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def measure(url: str, pid: int, token: str, data: bytes, media_type: str, n: int) -> dict:
    """One run: n concurrent uploads, with the server's RSS sampled every 5 ms."""
    process = psutil.Process(pid)
    base = process.memory_info().rss
    peak, stop = [base], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        answers = uploads(url, token, data, media_type, n)
    finally:
        stop.set()
        sampler.join()
    statuses: dict[str, int] = {}
    for status, _ in answers:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "concurrent": n,
        "bytes": len(data),
        "rss_before_mb": round(base / 2**20, 1),
        "peak_growth_mb": round((peak[0] - base) / 2**20, 1),
        "statuses": statuses,
        "slowest_s": round(max(seconds for _, seconds in answers), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrent", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args()
    files = at_limit_files()
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        token = create_token(ROOT, data_dir, "bench")
        with server(ROOT, data_dir) as (url, pid):
            for name, (data, media_type) in files.items():
                for n in args.concurrent:
                    results.setdefault(name, []).append(
                        measure(url, pid, token, data, media_type, n)
                    )
                    if not args.json:
                        print(name, json.dumps(results[name][-1]), flush=True)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
