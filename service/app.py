"""The FastAPI application: wires the store, runner, auth, routes, limits and metrics together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from gigasynth import __version__
from gigasynth_service.catalog import ModelCatalog
from gigasynth_service.config import ServiceConfig
from gigasynth_service.context import Services, services
from gigasynth_service.errors import install_error_handlers
from gigasynth_service.layouts import MB, DecodeBudget
from gigasynth_service.limits import BodyLimitMiddleware
from gigasynth_service.links import LinkSigner, load_or_create_key
from gigasynth_service.metrics import LatencyMiddleware, Metrics
from gigasynth_service.openapi import install_openapi
from gigasynth_service.paths import private_dir
from gigasynth_service.routes import jobs, layouts, slides, system, viewer
from gigasynth_service.runner import JobRunner
from gigasynth_service.slides import SlideTiles
from gigasynth_service.store import JobStore

STATIC = Path(__file__).resolve().parent / "static"


def build_services(config: ServiceConfig) -> Services:
    """Open the store (in the store dir, by default the data dir) and the parts sharing it."""
    private_dir(config.data_dir)
    store = JobStore(config.store_file)
    catalog = ModelCatalog(config.models_path, config.builtin_models)
    key = config.signing_key or load_or_create_key(config.store_path)
    return Services(
        config=config,
        store=store,
        catalog=catalog,
        runner=JobRunner(store, config, catalog),
        signer=LinkSigner(key, config.link_ttl_s),
        tiles=SlideTiles(config.tile_cache_entries),
        metrics=Metrics(store),
        decodes=DecodeBudget(
            config.decode_memory_mb * MB, config.decode_slots, config.decode_wait_s
        ),
    )


async def _services(request: Request) -> Services:
    """`gigasynth_service.context.services` as a coroutine: FastAPI runs a plain `def` dependency
    in its worker-thread pool, so every route paid a thread round trip (a wait for a free
    thread of 40 and for the GIL) for one attribute lookup. Installed as an override so
    that every route's `Svc` gets it."""
    return request.app.state.services


def create_app(config: ServiceConfig, run_jobs: bool = True) -> FastAPI:
    """The service app. With run_jobs=False jobs are accepted and stored but not computed."""
    svc = build_services(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if run_jobs:
            svc.runner.start()
        try:
            yield
        finally:
            if run_jobs:
                svc.runner.shutdown()
            svc.store.close()

    app = FastAPI(
        title="gigasynth",
        version=__version__,
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        description="Synthetic gigapixel pathology slides: jobs, DeepZoom tiles, "
        "viewer. Every endpoint but /healthz needs a bearer token.",
    )
    app.state.services = svc
    app.dependency_overrides[services] = _services
    install_error_handlers(app)
    for module in (system, jobs, layouts, slides, viewer):
        app.include_router(module.router)
    install_openapi(app)
    app.mount("/static/viewer", StaticFiles(directory=STATIC), name="viewer-static")
    app.mount("/static/openseadragon", viewer.OpenSeadragonFiles(config), name="openseadragon")
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=config.max_body_bytes,
        uploads={"/v1/layouts": (config.max_layout_bytes, "GIGASYNTH_MAX_LAYOUT_BYTES")},
    )
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(LatencyMiddleware, metrics=svc.metrics)
    return app
