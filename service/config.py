"""Service settings: one typed class (`ServiceConfig`, pydantic-settings) read from
GIGASYNTH_* environment variables; the CLI may override some (`with_overrides`).

Every variable is in the README's settings table (tests/test_settings.py checks it); a
malformed value, or settings that contradict each other (a link's default lifetime over
the longest allowed), is a one-line GigasynthError naming the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode

from gigasynth.settings import EnvSettings, load_settings, settings_error

_HERE = Path(__file__).resolve()
# OpenSeadragon's build folder where `npm ci` puts it in a source checkout (this file is
# then service/config.py beside pyproject.toml). An installed package has no checkout
# around it: there GIGASYNTH_OPENSEADRAGON_DIR must name the folder, or the viewer is off.
_IN_CHECKOUT = _HERE.parent.name == "service" and (_HERE.parents[1] / "pyproject.toml").is_file()
DEFAULT_OPENSEADRAGON_DIR: Path | None = (
    _HERE.parents[1] / "node_modules/openseadragon/build/openseadragon" if _IN_CHECKOUT else None
)
OPENSEADRAGON_SCRIPT = "openseadragon.min.js"


class ServiceConfig(EnvSettings):
    """Everything the app, the job runner and the CLI need to know about one deployment
    (each field is the variable GIGASYNTH_<FIELD>, except where an alias says otherwise)."""

    data_dir: Path = Path("gigasynth-data")
    store_dir: Path | None = None  # None: the data dir (see store_path)
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    scheduler: str | None = None  # None: an embedded dask LocalCluster
    dask_workers: PositiveInt | None = None  # the embedded cluster's parallel tiles (0: default)
    runner_threads: PositiveInt = 1  # jobs computed at the same time
    save_every: PositiveInt = 1  # diffusion steps between durable saves of a job
    block_steps: PositiveInt | None = None  # diffusion steps per tile task (0: the default)
    work_dir: Path | None = None  # None: job state beside its outputs in the data dir
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()  # empty: no cross-origin access
    max_body_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024
    max_layout_bytes: Annotated[int, Field(ge=1024)] = 16 * 1024 * 1024  # one layout upload
    max_layouts: PositiveInt = 100  # layouts each token may keep uploaded
    decode_memory_mb: PositiveInt = 512  # memory all layout decodes may hold at once
    decode_slots: PositiveInt = 2  # layout decodes at once (each keeps a core busy)
    decode_wait_s: PositiveFloat = 0.25  # how long a decode waits for a slot before a 503
    max_megapixels: PositiveFloat = 10_000.0  # per job, for every token
    max_side: Annotated[int, Field(ge=16)] = 262_144  # px, width or height
    max_steps: PositiveInt = 1000  # DDIM steps
    link_ttl_s: Annotated[int, Field(ge=10)] = 3600  # lifetime of signed viewer links
    link_max_ttl_s: Annotated[int, Field(ge=10)] = 7 * 86400  # the longest one asked for
    tile_ttl_s: Annotated[int, Field(ge=2)] = 300  # lifetime of the viewer's tile signatures
    signing_key: Annotated[bytes, Field(min_length=32)] | None = None  # None: generated once
    metrics_token: Annotated[str, Field(min_length=32)] | None = None  # /metrics (None: off)
    builtin_models: Annotated[tuple[str, ...], NoDecode] | None = None  # None: all bundled
    models_dir: Path | None = None  # None: <data_dir>/models
    openseadragon_dir: Path | None = DEFAULT_OPENSEADRAGON_DIR  # None: no viewer
    progress_interval_s: PositiveFloat = 0.5  # least time between progress writes
    tile_cache_entries: Annotated[int, Field(ge=0, validation_alias="GIGASYNTH_TILE_CACHE")] = (
        1024  # encoded DeepZoom tiles kept in memory
    )

    model_config = {**EnvSettings.model_config, "populate_by_name": True}

    @field_validator("cors_origins", "builtin_models", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        """A comma-separated variable as a tuple of its non-empty items."""
        if isinstance(value, str):
            items = tuple(item.strip() for item in value.split(",") if item.strip())
            return items or None
        return value

    @field_validator("dask_workers", "block_steps", mode="before")
    @classmethod
    def _zero_is_default(cls, value: Any) -> Any:
        return None if value in (0, "0") else value

    @field_validator("cors_origins", mode="after")
    @classmethod
    def _none_is_empty(cls, value: tuple[str, ...] | None) -> tuple[str, ...]:
        return value or ()

    @model_validator(mode="after")
    def _link_lifetimes(self) -> ServiceConfig:
        if self.link_ttl_s > self.link_max_ttl_s:
            raise ValueError(
                f"GIGASYNTH_LINK_TTL_S={self.link_ttl_s} exceeds "
                f"GIGASYNTH_LINK_MAX_TTL_S={self.link_max_ttl_s}"
            )
        return self

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
        """A copy with the given fields replaced where the value is not None (checked as
        the environment's values are)."""
        given = {k: v for k, v in values.items() if v is not None}
        try:
            return ServiceConfig.model_validate({**self.model_dump(), **given})
        except ValidationError as exc:
            raise settings_error(ServiceConfig, exc) from None


def load_config(env: Mapping[str, str] | None = None) -> ServiceConfig:
    """Settings from the environment (os.environ by default); unset or empty: the default."""
    return load_settings(ServiceConfig, env)
