"""What one running service shares: settings, store, catalog, runner, signer, tiles, metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from gigasynth_service.catalog import ModelCatalog
from gigasynth_service.config import ServiceConfig
from gigasynth_service.links import LinkSigner
from gigasynth_service.metrics import Metrics
from gigasynth_service.runner import JobRunner
from gigasynth_service.slides import SlideTiles
from gigasynth_service.store import JobStore


@dataclass
class Services:
    config: ServiceConfig
    store: JobStore
    catalog: ModelCatalog
    runner: JobRunner
    signer: LinkSigner
    tiles: SlideTiles
    metrics: Metrics


def services(request: Request) -> Services:
    """FastAPI dependency: the app's shared parts."""
    return request.app.state.services


Svc = Annotated[Services, Depends(services)]
