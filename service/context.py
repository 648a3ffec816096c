"""What one running service shares: settings, store, catalog, runner, signer, tiles, metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from service.catalog import ModelCatalog
from service.config import ServiceConfig
from service.links import LinkSigner
from service.metrics import Metrics
from service.runner import JobRunner
from service.slides import SlideTiles
from service.store import JobStore


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
