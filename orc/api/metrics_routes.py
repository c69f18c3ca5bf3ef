"""Prometheus scrape endpoint: HTTP metrics of every worker plus figures read from the database."""

from __future__ import annotations

import asyncio

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sanic import Request
from sanic.response import HTTPResponse, raw

from orc.api.blueprint import JsonBlueprint
from orc.health.prometheus import render_metrics
from orc.usage.cost import usage_totals
from orc.usage.pricing import TOKEN_TYPES, PriceList

bp = JsonBlueprint("metrics")


async def business_metrics(prices: PriceList) -> list[Metric]:
    """orc_tasks_active, orc_tokens_used_total{model,type}, orc_cost_usd_total{model}."""
    by_model, running = await usage_totals()
    active = GaugeMetricFamily("orc_tasks_active", "Number of currently running tasks")
    active.add_metric([], running)
    tokens = CounterMetricFamily(
        "orc_tokens_used_total", "Total tokens used", labels=["model", "type"]
    )
    cost = CounterMetricFamily(
        "orc_cost_usd_total",
        "Estimated cost in USD (a model without a price counts what the agent reported)",
        labels=["model"],
    )
    for model, spend in sorted(by_model.items()):
        for kind in TOKEN_TYPES:
            tokens.add_metric([model, kind], spend.tokens.get(kind, 0))
        cost.add_metric([model], spend.cost(model, prices))
    from orc.runs.run_metrics import run_metric_families

    families = [active, tokens, cost, *await run_metric_families()]
    return families + await backup_and_replication_metrics()


async def backup_and_replication_metrics() -> list[Metric]:
    """orc_backup_* and orc_litestream_* from the outcomes jobs recorded in the database."""
    from datetime import UTC, datetime

    from orc.backup.reporting import backup_metric_families
    from orc.backup.state import backup_figures
    from orc.replication.status import last_replication, replication_metric_families

    families = backup_metric_families(await backup_figures())
    return families + replication_metric_families(await last_replication(), datetime.now(UTC))


@bp.get("/api/metrics")
async def metrics(request: Request) -> HTTPResponse:
    """Prometheus text exposition of every orc metric."""
    families = await business_metrics(request.app.ctx.prices)
    body, content_type = await asyncio.to_thread(render_metrics, families)
    return raw(body, content_type=content_type)
