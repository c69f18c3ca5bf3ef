"""HTTP metrics and the Prometheus exposition, correct across API worker processes.

With ``--workers`` above 1, ``orc serve`` sets PROMETHEUS_MULTIPROC_DIR to a fresh directory
before any API process starts, so every worker writes its samples there and any worker can
answer a scrape. A single API process keeps its samples in memory.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from orc.config import METRICS_DIR_ENV

UNMATCHED_ROUTE = "<unmatched>"

HTTP_REQUESTS = Counter(
    "orc_http_requests_total", "HTTP requests answered", ["method", "path", "status"]
)
HTTP_DURATION = Histogram(
    "orc_http_request_duration_seconds", "HTTP request duration", ["method", "path"]
)


# Labelled children by (method, route, status): label lookups cost more than the increments.
# Bounded, because routes are templates and unknown paths share one label.
_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request under its route template (never the raw path)."""
    key = (method, route, status)
    pair = _children.get(key)
    if pair is None:
        pair = (
            HTTP_REQUESTS.labels(method, route, str(status)),
            HTTP_DURATION.labels(method, route),
        )
        _children[key] = pair
    pair[0].inc()
    pair[1].observe(seconds)


class _Families(Collector):
    """Metric families computed for one scrape (business figures read from the database)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _scrape_registry() -> CollectorRegistry:
    if not os.environ.get(METRICS_DIR_ENV):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    # Process metrics describe the worker that answers the scrape.
    ProcessCollector(registry=registry)
    return registry


def render_metrics(extra: list[Metric] | None = None) -> tuple[bytes, str]:
    """The exposition text of every metric (plus ``extra`` families) and its content type."""
    text = generate_latest(_scrape_registry())
    if extra:
        scrape = CollectorRegistry(auto_describe=False)
        scrape.register(_Families(extra))
        text += generate_latest(scrape)
    return text, CONTENT_TYPE_LATEST
