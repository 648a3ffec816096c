"""Prometheus metrics: jobs by state, tiles served, request latency by route.

Each app has its own registry (so several apps in one process, as in tests, do not
collide). Latency is labelled by the route's template, never the raw path, so job ids
do not multiply the series.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.store import JobStore

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class _JobsByState(Collector):
    """Reads job counts from the store at scrape time (the store is the truth)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("gigasynth_jobs", "Jobs by state", labels=["state"])
        for state, count in self.store.counts_by_state().items():
            family.add_metric([state], count)
        yield family


class Metrics:
    """The service's metrics and their registry."""

    def __init__(self, store: JobStore) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_JobsByState(store))
        self.tiles_served = Counter("gigasynth_tiles_served", "DeepZoom tiles served",
                                    registry=self.registry)
        self.jobs_submitted = Counter("gigasynth_jobs_submitted", "Jobs accepted",
                                      registry=self.registry)
        self.request_seconds = Histogram(
            "gigasynth_http_request_duration_seconds", "HTTP request latency",
            ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class LatencyMiddleware:
    """Times every HTTP request into `request_seconds` (pure ASGI: adds no buffering)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_with_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.request_seconds.labels(scope["method"], template, str(status[0])) \
                .observe(time.perf_counter() - start)
