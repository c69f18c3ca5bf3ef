"""HTTP metrics and the Prometheus exposition, correct across API worker processes.

With ``--workers`` above 1, ``orc serve`` sets PROMETHEUS_MULTIPROC_DIR to a fresh directory
before any API process starts, so every worker writes its samples there and any worker can
answer a scrape. A single API process keeps its samples in memory.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
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
# Answered requests wait here until ``flush_observations`` folds them into the metrics, in a
# batch: at every scrape, and every second in the API (a request only appends a tuple);
# MAX_PENDING bounds it where nothing flushes (no server loop).
# deque.append and popleft are atomic, so the scrape's thread and the event loop can share it.
# With several API processes the samples live in files that any of them reads at a scrape:
# there each request is folded in at once, so a scrape always sees every process's requests.
_pending: deque[tuple[str, str, int, float]] = deque()
_FOLD_AT_ONCE = bool(os.environ.get(METRICS_DIR_ENV))
MAX_PENDING = 10_000


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request under its route template (never the raw path)."""
    _pending.append((method, route, status, seconds))
    if _FOLD_AT_ONCE or len(_pending) > MAX_PENDING:
        flush_observations()


def flush_observations() -> None:
    """Fold the requests observed so far into the HTTP metrics."""
    counts: dict[tuple[str, str, int], int] = {}
    popleft = _pending.popleft
    with contextlib.suppress(IndexError):
        while True:
            method, route, status, seconds = popleft()
            key = (method, route, status)
            pair = _children.get(key)
            if pair is None:
                pair = (
                    HTTP_REQUESTS.labels(method, route, str(status)),
                    HTTP_DURATION.labels(method, route),
                )
                _children[key] = pair
            pair[1].observe(seconds)
            counts[key] = counts.get(key, 0) + 1
    for key, count in counts.items():
        _children[key][0].inc(count)


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
    flush_observations()
    text = generate_latest(_scrape_registry())
    if extra:
        scrape = CollectorRegistry(auto_describe=False)
        scrape.register(_Families(extra))
        text += generate_latest(scrape)
    return text, CONTENT_TYPE_LATEST
