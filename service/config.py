"""Service settings, read from GIGASYNTH_* environment variables (the CLI may override some).

Every variable is documented in the README's "Service" section; a malformed value is a
one-line GigasynthError naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from gigasynth.errors import GigasynthError

_HERE = Path(__file__).resolve()
# OpenSeadragon's build folder where `npm ci` puts it in a source checkout (this file is
# then service/config.py beside pyproject.toml). An installed package has no checkout
# around it: there GIGASYNTH_OPENSEADRAGON_DIR must name the folder, or the viewer is off.
_IN_CHECKOUT = _HERE.parent.name == "service" and (_HERE.parents[1] / "pyproject.toml").is_file()
DEFAULT_OPENSEADRAGON_DIR: Path | None = (
    _HERE.parents[1] / "node_modules/openseadragon/build/openseadragon" if _IN_CHECKOUT else None
)
OPENSEADRAGON_SCRIPT = "openseadragon.min.js"


@dataclass(frozen=True)
class ServiceConfig:
    """Everything the app, the job runner and the CLI need to know about one deployment."""

    data_dir: Path = Path("gigasynth-data")
    store_dir: Path | None = None  # None: the data dir (see store_path)
    host: str = "127.0.0.1"
    port: int = 8000
    scheduler: str | None = None  # None: an embedded dask LocalCluster
    dask_workers: int | None = None  # parallel tiles of the embedded cluster (None: default)
    runner_threads: int = 1  # jobs computed at the same time
    save_every: int = 1  # diffusion steps between durable saves of a job
    block_steps: int | None = None  # diffusion steps per tile task (None: the engine's default)
    work_dir: Path | None = None  # None: job state beside its outputs in the data dir
    cors_origins: tuple[str, ...] = ()  # empty: no cross-origin access
    max_body_bytes: int = 64 * 1024
    max_layout_bytes: int = 16 * 1024 * 1024  # one uploaded layout image (POST /v1/layouts)
    max_layouts: int = 100  # layouts each token may keep uploaded
    max_megapixels: float = 10_000.0  # per job, for every token
    max_side: int = 262_144  # px, width or height
    max_steps: int = 1000  # DDIM steps
    link_ttl_s: int = 3600  # lifetime of signed viewer links, unless asked
    link_max_ttl_s: int = 7 * 86400  # the longest lifetime a token holder may ask for
    tile_ttl_s: int = 300  # lifetime of the viewer's tile signatures
    signing_key: bytes | None = None  # None: generated once, kept in the data dir
    builtin_models: tuple[str, ...] | None = None  # None: every bundled model
    models_dir: Path | None = None  # None: <data_dir>/models
    openseadragon_dir: Path | None = field(default=DEFAULT_OPENSEADRAGON_DIR)  # None: no viewer
    progress_interval_s: float = 0.5  # least time between progress writes to the store
    tile_cache_entries: int = 1024  # encoded DeepZoom tiles kept in memory

    @property
    def store_path(self) -> Path:
        """Where the SQLite job store, the signing key and the server lock live.

        SQLite (WAL) and the lock need a local filesystem; job outputs under the data dir
        may sit on a network share that Dask workers also mount.
        """
        return self.store_dir if self.store_dir is not None else self.data_dir

    @property
    def store_file(self) -> Path:
        return self.store_path / "jobs.sqlite3"

    @property
    def models_path(self) -> Path:
        return self.models_dir if self.models_dir is not None else self.data_dir / "models"

    @property
    def has_openseadragon(self) -> bool:
        """Whether the viewer's OpenSeadragon is there to serve (its script in its folder)."""
        return (
            self.openseadragon_dir is not None
            and (self.openseadragon_dir / OPENSEADRAGON_SCRIPT).is_file()
        )

    def openseadragon_origin(self) -> str:
        """One line for the start-up log: where the viewer's OpenSeadragon comes from, or
        that it is missing and how to provide it."""
        where = self.openseadragon_dir
        if where is not None and self.has_openseadragon:
            return f"viewer: serving OpenSeadragon from {where}"
        found = "not installed" if where is None else f"{where} has no {OPENSEADRAGON_SCRIPT}"
        return (
            f"viewer: OpenSeadragon is missing ({found}); /view/ and /static/openseadragon/ "
            f"answer 503 until GIGASYNTH_OPENSEADRAGON_DIR names its build folder "
            f"(node_modules/openseadragon/build/openseadragon after `npm ci` with the "
            f"repository's package.json)"
        )

    def with_overrides(self, **values: object) -> ServiceConfig:
        """A copy with the given fields replaced where the value is not None."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    text = env.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise GigasynthError(f"{name}={text!r} is not an integer") from None
    if value < minimum:
        raise GigasynthError(f"{name}={value} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise GigasynthError(f"{name}={text!r} is not a number") from None
    if not value > 0:
        raise GigasynthError(f"{name}={value} must be positive")
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...] | None:
    text = env.get(name, "")
    if not text.strip():
        return None
    return tuple(item.strip() for item in text.split(",") if item.strip())


def load_config(env: Mapping[str, str] | None = None) -> ServiceConfig:
    """Settings from the environment (os.environ by default); unset or empty: the default."""
    env = os.environ if env is None else env
    key = env.get("GIGASYNTH_SIGNING_KEY") or None
    if key is not None and len(key) < 32:
        raise GigasynthError("GIGASYNTH_SIGNING_KEY must be at least 32 characters")
    models_dir = env.get("GIGASYNTH_MODELS_DIR")
    store_dir = env.get("GIGASYNTH_STORE_DIR")
    work_dir = env.get("GIGASYNTH_WORK_DIR")
    osd_dir = env.get("GIGASYNTH_OPENSEADRAGON_DIR")
    link_ttl_s = _int(env, "GIGASYNTH_LINK_TTL_S", 3600, minimum=10)
    link_max_ttl_s = _int(env, "GIGASYNTH_LINK_MAX_TTL_S", 7 * 86400, minimum=10)
    if link_ttl_s > link_max_ttl_s:
        raise GigasynthError(
            f"GIGASYNTH_LINK_TTL_S={link_ttl_s} exceeds GIGASYNTH_LINK_MAX_TTL_S={link_max_ttl_s}"
        )
    return ServiceConfig(
        data_dir=Path(env.get("GIGASYNTH_DATA_DIR") or "gigasynth-data"),
        store_dir=Path(store_dir) if store_dir else None,
        host=env.get("GIGASYNTH_HOST") or "127.0.0.1",
        port=_int(env, "GIGASYNTH_PORT", 8000, minimum=1),
        scheduler=env.get("GIGASYNTH_SCHEDULER") or None,
        dask_workers=_int(env, "GIGASYNTH_DASK_WORKERS", 0, minimum=0) or None,
        runner_threads=_int(env, "GIGASYNTH_RUNNER_THREADS", 1, minimum=1),
        save_every=_int(env, "GIGASYNTH_SAVE_EVERY", 1, minimum=1),
        block_steps=_int(env, "GIGASYNTH_BLOCK_STEPS", 0, minimum=0) or None,
        work_dir=Path(work_dir) if work_dir else None,
        cors_origins=_list(env, "GIGASYNTH_CORS_ORIGINS") or (),
        max_body_bytes=_int(env, "GIGASYNTH_MAX_BODY_BYTES", 64 * 1024, minimum=1024),
        max_layout_bytes=_int(env, "GIGASYNTH_MAX_LAYOUT_BYTES", 16 * 1024 * 1024, minimum=1024),
        max_layouts=_int(env, "GIGASYNTH_MAX_LAYOUTS", 100, minimum=1),
        max_megapixels=_float(env, "GIGASYNTH_MAX_MEGAPIXELS", 10_000.0),
        max_side=_int(env, "GIGASYNTH_MAX_SIDE", 262_144, minimum=16),
        max_steps=_int(env, "GIGASYNTH_MAX_STEPS", 1000, minimum=1),
        link_ttl_s=link_ttl_s,
        link_max_ttl_s=link_max_ttl_s,
        tile_ttl_s=_int(env, "GIGASYNTH_TILE_TTL_S", 300, minimum=2),
        signing_key=key.encode() if key else None,
        builtin_models=_list(env, "GIGASYNTH_BUILTIN_MODELS"),
        models_dir=Path(models_dir) if models_dir else None,
        openseadragon_dir=Path(osd_dir) if osd_dir else DEFAULT_OPENSEADRAGON_DIR,
        progress_interval_s=_float(env, "GIGASYNTH_PROGRESS_INTERVAL_S", 0.5),
        tile_cache_entries=_int(env, "GIGASYNTH_TILE_CACHE", 1024),
    )
