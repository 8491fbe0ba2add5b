"""Request metrics for Prometheus, labelled by route template (never by raw path).

BentoML's own metrics are switched off (serving/service.py): its middleware labels every
request with the raw path, so any path, person ids included, became a series and the series
grew without bound. Here a request's `route` label is one of the service's own routes (the
/v1 routes, the pages, the probes), or "/v1/{unknown}" and "other"; the method is one of the
common verbs or OTHER; so the series are bounded whatever callers send.

`GET /metrics` needs a key whose role may read metrics (serving/roles.py: admin, monitor); the
request guard serves it. With several workers BentoML runs prometheus_client in multiprocess mode
(PROMETHEUS_MULTIPROC_DIR), and the exposition collects every worker's values.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

from serving.roles import ROUTE

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OPEN_ROUTES = ("/livez", "/readyz")
UI_ROUTES = ("/ui/", "/ui/person", "/ui/register", "/ui/referrals")


def route_label(path: str, v1_paths: Collection[str]) -> str:
    """The route template a path answers to; bounded whatever the path."""
    if (
        path in v1_paths
        or path in OPEN_ROUTES
        or path in UI_ROUTES
        or path == ROUTE["metrics"].path
    ):
        return path
    if path.startswith("/ui/static/"):
        return "/ui/static/{name}"
    if path == "/v1" or path.startswith("/v1/"):
        return "/v1/{unknown}"
    if path == "/cds-services":
        return path
    if path.startswith("/cds-services/"):
        return "/cds-services/{service}"
    return "other"


class Metrics:
    """The service's request counter and latency histogram (created in the worker, once
    PROMETHEUS_MULTIPROC_DIR is set)."""

    def __init__(self) -> None:
        import prometheus_client
        import prometheus_client.multiprocess

        self._client = prometheus_client
        registry = prometheus_client.CollectorRegistry()  # ours alone: no default collectors
        self.registry = registry
        self.requests = prometheus_client.Counter(
            "carerisk_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.seconds = prometheus_client.Histogram(
            "carerisk_http_request_duration_seconds",
            "Time to answer, by route template and method",
            ["route", "method"],
            registry=registry,
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        verb = method if method in METHODS else "OTHER"
        self.requests.labels(route, verb, str(status)).inc()
        self.seconds.labels(route, verb).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The text format, every worker's values when they run as several processes."""
        client: Any = self._client
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = client.CollectorRegistry()
            client.multiprocess.MultiProcessCollector(registry)
            return client.generate_latest(registry), client.CONTENT_TYPE_LATEST
        return client.generate_latest(self.registry), client.CONTENT_TYPE_LATEST
