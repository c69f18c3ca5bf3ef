"""Token usage: recording model calls and a task's totals by phase and model."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from tortoise.functions import Count, Sum

from orc.db.models import Task, UsageEvent
from orc.outbox.events import change_transaction, emit
from orc.tasks.lifecycle import TaskNotFound, format_task_id
from orc.usage.pricing import TOKEN_TYPES, PriceList

TOKEN_COLUMNS = tuple(f"{kind}_tokens" for kind in TOKEN_TYPES)
SUMMED_COLUMNS = (*TOKEN_COLUMNS, "reported_cost_usd")


@dataclass(frozen=True)
class UsageRecord:
    """One model call as a client reports it."""

    model: str
    phase: str
    occurred_at: datetime
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reported_cost_usd: float = 0.0


@dataclass(frozen=True)
class UsageRecorded:
    """What one report of usage added: its events, their tokens by type, the models."""

    recorded: int
    tokens: dict[str, int]
    models: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UsageLine:
    """A task's tokens and cost for one (phase, model)."""

    phase: str
    model: str
    events: int
    tokens: dict[str, int]
    cost_usd: float


@dataclass(frozen=True)
class TaskUsage:
    """A task's tokens and cost, in total and by (phase, model)."""

    task_id: str
    tokens: dict[str, int]
    cost_usd: float
    by_phase_and_model: list[UsageLine]
    unpriced_models: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def token_dict(row: Any) -> dict[str, int]:
    """{input, output, cache_read, cache_write} from an object or mapping with *_tokens fields."""
    get = row.get if isinstance(row, dict) else lambda key: getattr(row, key)
    return {kind: int(get(f"{kind}_tokens") or 0) for kind in TOKEN_TYPES}


async def record_usage(number: int, records: list[UsageRecord]) -> UsageRecorded:
    """Append usage events for a task and one ``tokens`` event, all or nothing."""
    task_id = format_task_id(number)
    async with change_transaction() as conn:
        task = await Task.filter(number=number).using_db(conn).first()
        if task is None:
            raise TaskNotFound(task_id)
        await UsageEvent.bulk_create(
            [
                UsageEvent(
                    task_number=number,
                    phase=record.phase or (task.current_phase or ""),
                    model=record.model,
                    occurred_at=record.occurred_at,
                    input_tokens=record.input_tokens,
                    output_tokens=record.output_tokens,
                    cache_read_tokens=record.cache_read_tokens,
                    cache_write_tokens=record.cache_write_tokens,
                    reported_cost_usd=record.reported_cost_usd,
                )
                for record in records
            ],
            using_db=conn,
        )
        tokens = {kind: sum(getattr(r, f"{kind}_tokens") for r in records) for kind in TOKEN_TYPES}
        recorded = UsageRecorded(len(records), tokens, sorted({r.model for r in records}))
        await emit(conn, "tokens", task_id, recorded.to_json())
    return recorded


async def task_usage(number: int, prices: PriceList) -> TaskUsage:
    """A task's tokens and cost, in total and by (phase, model)."""
    if not await Task.filter(number=number).exists():
        raise TaskNotFound(format_task_id(number))
    rows = (
        await UsageEvent.filter(task_number=number)
        .group_by("phase", "model")
        .annotate(**{column: Sum(column) for column in SUMMED_COLUMNS}, events=Count("id"))
        .values("phase", "model", "events", *SUMMED_COLUMNS)
    )
    breakdown = []
    total_tokens = dict.fromkeys(TOKEN_TYPES, 0)
    total_cost = 0.0
    unpriced: set[str] = set()
    for row in sorted(rows, key=lambda r: (r["phase"], r["model"])):
        tokens = token_dict(row)
        cost = prices.cost(row["model"], tokens, float(row["reported_cost_usd"] or 0))
        if prices.price_for(row["model"]) is None:
            unpriced.add(row["model"])
        breakdown.append(
            UsageLine(row["phase"], row["model"], row["events"], tokens, round(cost, 6))
        )
        total_cost += cost
        for kind in TOKEN_TYPES:
            total_tokens[kind] += tokens[kind]
    return TaskUsage(
        task_id=format_task_id(number),
        tokens=total_tokens,
        cost_usd=round(total_cost, 6),
        by_phase_and_model=breakdown,
        unpriced_models=sorted(unpriced),
    )
