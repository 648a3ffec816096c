"""Prometheus metrics: jobs by state, tiles served, request latency by route.

Each app has its own registry (so several apps in one process, as in tests, do not
collide). Every label of the latency histogram takes values from a fixed set, so no
client can grow /metrics: the route's template (never the raw path; "unmatched" when no
route matched), the method (one of the standard ones, else "other") and the status (the
codes this service answers with, else its class such as "5xx").
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gigasynth_service.store import JobStore

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
STATUSES = frozenset(
    {200, 202, 204, 206, 304, 400, 401, 403, 404, 405, 409, 410, 413, 416, 422, 429, 500, 503}
)


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


def status_label(status: int) -> str:
    if status in STATUSES:
        return str(status)
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


def route_label(scope: Scope) -> str:
    """The matched route's template (or mount prefix), else "unmatched"."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) and path else "unmatched"


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
        self.tiles_served = Counter(
            "gigasynth_tiles_served", "DeepZoom tiles served", registry=self.registry
        )
        self.jobs_submitted = Counter(
            "gigasynth_jobs_submitted", "Jobs accepted", registry=self.registry
        )
        self.request_seconds = Histogram(
            "gigasynth_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
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
            self.metrics.request_seconds.labels(
                method_label(scope["method"]),
                route_label(scope),
                status_label(status[0]),
            ).observe(time.perf_counter() - start)
