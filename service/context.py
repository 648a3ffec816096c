"""What one running service shares: settings, store, catalog, runner, signer, tiles,
metrics and the layout decode budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from gigasynth_service.catalog import ModelCatalog
from gigasynth_service.config import ServiceConfig
from gigasynth_service.layouts import DecodeBudget
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
    decodes: DecodeBudget  # the memory layout decodes may hold at once


def services(request: Request) -> Services:
    """FastAPI dependency: the app's shared parts."""
    return request.app.state.services


Svc = Annotated[Services, Depends(services)]
