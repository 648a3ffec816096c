"""`gigasynth serve`: the HTTP service (job API, DeepZoom tiles, viewer) under uvicorn."""

from __future__ import annotations

import argparse
import fcntl
import os
from pathlib import Path
from typing import TextIO

from gigasynth.errors import GigasynthError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the synthesis service (HTTP API, tiles, viewer)",
        description="Settings come from GIGASYNTH_* environment variables "
        "(see the README's Service section); these flags win.",
    )
    p.add_argument("--host", help="address to listen on (GIGASYNTH_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (GIGASYNTH_PORT, default 8000)")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="job outputs and models, and the job store unless GIGASYNTH_STORE_DIR "
        "is set (GIGASYNTH_DATA_DIR, default ./gigasynth-data)",
    )
    p.add_argument(
        "--scheduler",
        help="Dask scheduler tcp://HOST:PORT (GIGASYNTH_SCHEDULER; default: an "
        "embedded LocalCluster)",
    )
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    p.set_defaults(func=run)


def lock_data_dir(store_dir: Path) -> TextIO:
    """Hold an exclusive lock on the store dir for this process's life: one server per store.

    flock is reliable on a local filesystem only, hence GIGASYNTH_STORE_DIR.
    """
    store_dir.mkdir(parents=True, exist_ok=True)
    handle = open(store_dir / "server.lock", "w")  # noqa: SIM115 (held until exit)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise GigasynthError(f"another gigasynth server is using {store_dir}") from None
    return handle


def run(args: argparse.Namespace) -> int:
    """Serve until stopped. The umask 0o077 keeps every file the server, its embedded Dask
    workers and the engine create private to the service's user (the data dir holds
    every token's slides)."""
    import logging

    import uvicorn

    from gigasynth_service.app import create_app
    from gigasynth_service.config import load_config
    from gigasynth_service.logs import configure_logging

    os.umask(0o077)

    config = load_config().with_overrides(
        host=args.host, port=args.port, data_dir=args.data_dir, scheduler=args.scheduler
    )
    if not 0 < config.port < 65536:
        raise GigasynthError(f"--port {config.port} is not a TCP port")
    lock = lock_data_dir(config.store_path)
    try:
        log_config = configure_logging(args.log_level)  # access log without sig= or tokens
        logging.getLogger("gigasynth.service").log(
            logging.INFO if config.has_openseadragon else logging.WARNING,
            config.openseadragon_origin(),
        )
        app = create_app(config)
        uvicorn.run(
            app,
            host=config.host,
            port=config.port,
            log_level=args.log_level,
            log_config=log_config,
            proxy_headers=True,
            server_header=False,
        )
    finally:
        lock.close()
    return 0
