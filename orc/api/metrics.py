"""Prometheus scrape endpoint."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, raw

from orc.metrics import render_metrics

bp = Blueprint("metrics")


@bp.get("/api/metrics")
async def metrics(request: Request) -> HTTPResponse:
    """Prometheus text exposition of every orc metric."""
    body, content_type = render_metrics()
    return raw(body, content_type=content_type)
