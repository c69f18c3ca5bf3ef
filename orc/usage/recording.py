"""Token usage: recording model calls and a task's totals by phase and model."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.functions import Count, Sum

from orc.db.models import Task, UsageEvent
from orc.db.sql import fetch, snapshot_transaction
from orc.outbox.events import change_transaction, emit
from orc.tasks.lifecycle import TaskNotFound, format_task_id
from orc.usage.pricing import TOKEN_TYPES, Price, PriceList
from orc.usage.rollups import TAIL_IDS, read_watermark, task_models_ready

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


# Token sums as BIGINT: PostgreSQL's SUM of a bigint is a numeric, which asyncpg hands over as
# a Decimal, slow to make and to convert (a page of the task list converts hundreds).
_SUMS_PER_TASK_AND_MODEL = (
    "SELECT task_number AS k, model, "  # noqa: S608 (column and table names are constants)
    + ", ".join(f"CAST(SUM({column}) AS BIGINT) AS {column}" for column in TOKEN_COLUMNS)
    + ", SUM(reported_cost_usd) AS reported FROM {table} WHERE {where} "
    "GROUP BY task_number, model"
)


async def usage_by_task(numbers: list[int], prices: PriceList) -> dict[int, tuple[int, float]]:
    """(total tokens, cost) of each of these tasks: every page of the task list asks.

    Once the aggregation has filled usage_task_month_model, each task's folded tokens come from
    there (a few rows a task and model, by its task_number index) and only the events above
    the watermark from usage_event, in one snapshot: exactly the events' figures, for a cost
    that does not grow with a task's history. Before, from the events (by their task_number
    index). Tokens are added per task and model before they are priced, as ``PriceList.cost``
    prices them, each model's price looked up once.
    """
    if not numbers:
        return {}
    tasks = f"task_number IN ({', '.join('?' for _ in numbers)})"
    async with snapshot_transaction() as conn:
        if await task_models_ready(conn):
            watermark = await read_watermark(conn)
            rows = await _sums(conn, "usage_task_month_model", tasks, numbers)
            rows += await _sums(
                conn, "usage_event", f"{TAIL_IDS} AND {tasks}", [watermark, *numbers]
            )
        else:
            rows = await _sums(conn, "usage_event", tasks, numbers)
    # [input, output, cache_read, cache_write, reported] per (task, model), folded and tail.
    per_model: dict[tuple[int, str], list[Any]] = defaultdict(lambda: [0, 0, 0, 0, 0.0])
    for row in rows:
        sums = per_model[(int(row["k"]), row["model"])]
        for i, column in enumerate(TOKEN_COLUMNS):
            sums[i] += int(row[column] or 0)
        sums[4] += float(row["reported"] or 0)
    price_of: dict[str, Price | None] = {}
    totals: dict[int, tuple[int, float]] = {}
    for (number, model), (*counts, reported) in per_model.items():
        if model not in price_of:
            price_of[model] = prices.price_for(model)
        price = price_of[model]
        cost = reported if price is None else price.cost_of(*counts)
        before_tokens, before_cost = totals.get(number, (0, 0.0))
        totals[number] = (before_tokens + sum(counts), before_cost + cost)
    return totals


async def _sums(conn: BaseDBAsyncClient, table: str, where: str, args: list[Any]) -> list[Any]:
    sql = _SUMS_PER_TASK_AND_MODEL.format(table=table, where=where)
    return list(await fetch(conn, sql, args))
