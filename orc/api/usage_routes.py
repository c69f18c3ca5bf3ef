"""Token usage of a task, and cost reports."""

from __future__ import annotations

from datetime import UTC, datetime

from sanic import Request
from sanic.response import HTTPResponse, json

from orc.api.blueprint import JsonBlueprint
from orc.api.openapi_ext import openapi
from orc.api.openapi_schema import json_body
from orc.api.schemas import UsageBatch, UsageIn, parse_usage, query_int
from orc.api.task_routes import check_may_change, task_number
from orc.usage.cost import cost_summary, cost_timeseries
from orc.usage.recording import UsageRecord, record_usage, task_usage

bp = JsonBlueprint("usage")
MAX_DAYS = 366


@bp.post("/api/tasks/<task_id>/usage")
@openapi.body(json_body(UsageIn, UsageBatch))
async def usage_record(request: Request, task_id: str) -> HTTPResponse:
    """Record one model call, or a batch ``{"events": [...]}`` (all or nothing)."""
    number = task_number(task_id)
    await check_may_change(request, number)
    now = datetime.now(UTC)
    records = [
        UsageRecord(
            model=item.model,
            phase=item.phase,
            occurred_at=item.occurred_at or now,
            input_tokens=item.input_tokens,
            output_tokens=item.output_tokens,
            cache_read_tokens=item.cache_read_tokens,
            cache_write_tokens=item.cache_write_tokens,
        )
        for item in parse_usage(request)
    ]
    return json((await record_usage(number, records)).to_json(), status=201)


@bp.get("/api/tasks/<task_id>/usage")
async def usage_show(request: Request, task_id: str) -> HTTPResponse:
    """A task's tokens and cost by phase and model."""
    return json((await task_usage(task_number(task_id), request.app.ctx.prices)).to_json())


@bp.get("/api/cost/summary")
async def cost_summary_view(request: Request) -> HTTPResponse:
    """Today, this week, this month (UTC): tokens and cost; by model; top tasks."""
    return json((await cost_summary(request.app.ctx.prices)).to_json())


@bp.get("/api/cost/timeseries")
async def cost_timeseries_view(request: Request) -> HTTPResponse:
    """Daily tokens and cost for the last ``days`` days (UTC), today included."""
    days = query_int(request, "days", 30, 1, MAX_DAYS)
    buckets = await cost_timeseries(request.app.ctx.prices, days)
    return json({"days": days, "buckets": [bucket.to_json() for bucket in buckets]})
