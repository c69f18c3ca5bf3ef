"""Cost reports: today / week / month, by model, top tasks, daily series, all-time totals.

Everything reads what the aggregation job folded (daily totals per model, per-month task
costs; the hourly rollups where those cannot answer) plus the tail of usage events not folded
yet, in one snapshot, so the numbers are exact whether or not the job has run, and a report
reads a few rows per day and model, however many tasks and events there are.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from orc.db.models import Task
from orc.db.sql import as_datetime, fetch, snapshot_transaction, time_bucket
from orc.tasks.counts import count_tasks
from orc.tasks.lifecycle import format_task_id
from orc.tasks.vocabulary import ACTIVE_STATUS
from orc.usage.pricing import TOKEN_TYPES, PriceList
from orc.usage.rollups import TAIL_IDS, read_fold_state, read_watermark
from orc.usage.task_months import (
    NEAR_TIE_USD,
    TaskMonth,
    candidate_tasks,
    prices_fingerprint,
    stored_costs,
    stored_fingerprint,
)

# Every read names the figures alike (a row's TOKEN_TYPES and "reported"), summed from the
# events or a rollup (_SUMS) or read as a folded table stores them (_FOLDED).
_FIGURES = (*((f"{kind}_tokens", kind) for kind in TOKEN_TYPES), ("reported_cost_usd", "reported"))
_SUMS = ", ".join(f"SUM({column}) AS {name}" for column, name in _FIGURES)
_FOLDED = ", ".join(f"{column} AS {name}" for column, name in _FIGURES)
TOP_TASKS = 10

Tokens = dict[str, int]


@dataclass
class Spend:
    """One model's tokens by type, and what the agent reported they cost (which counts only
    when the price list does not know the model)."""

    tokens: Tokens = field(default_factory=lambda: dict.fromkeys(TOKEN_TYPES, 0))
    reported_usd: float = 0.0

    def add(self, other: Spend) -> None:
        for kind in TOKEN_TYPES:
            self.tokens[kind] = self.tokens.get(kind, 0) + other.tokens.get(kind, 0)
        self.reported_usd += other.reported_usd

    def cost(self, model: str, prices: PriceList) -> float:
        return prices.cost(model, self.tokens, self.reported_usd)


@dataclass(frozen=True)
class CostBlock:
    """Tokens by type, their sum and their cost in US dollars (to the micro-dollar)."""

    tokens: Tokens
    total_tokens: int
    cost_usd: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelCost:
    """One model's usage this month, and whether the price list knows it."""

    model: str
    cost: CostBlock
    priced: bool

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, **self.cost.to_json(), "priced": self.priced}


@dataclass(frozen=True)
class TaskCost:
    """One of the costliest tasks this month (``title`` is None once it is deleted)."""

    task_id: str
    title: str | None
    total_tokens: int
    cost_usd: float


@dataclass(frozen=True)
class CostSummary:
    """Today, this week, this month (UTC); by model and the top tasks of the month."""

    generated_at: datetime
    today: CostBlock
    week: CostBlock
    month: CostBlock
    by_model: list[ModelCost]
    top_tasks: list[TaskCost]
    unpriced_models: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(),
            "today": self.today.to_json(),
            "week": self.week.to_json(),
            "month": self.month.to_json(),
            "by_model": [row.to_json() for row in self.by_model],
            "top_tasks": [asdict(row) for row in self.top_tasks],
            "unpriced_models": list(self.unpriced_models),
        }


@dataclass(frozen=True)
class DayCost:
    """One UTC day's usage."""

    day: date
    cost: CostBlock

    def to_json(self) -> dict[str, Any]:
        return {"date": self.day.isoformat(), **self.cost.to_json()}


def _counts(row: Any) -> list[int]:
    """A row's token sums in TOKEN_TYPES order (SQL gives NULL for none, PostgreSQL Decimals)."""
    return [int(row[kind] or 0) for kind in TOKEN_TYPES]


def _spend(row: Any) -> Spend:
    return Spend(dict(zip(TOKEN_TYPES, _counts(row), strict=True)), float(row["reported"] or 0))


async def _usage_by(
    conn: BaseDBAsyncClient, key: str, since: datetime | None
) -> list[tuple[Any, str, Spend]]:
    """(key value, model, tokens) from the folded tables and the unfolded tail (_usage_rows)."""
    return _rows(await _usage_rows(conn, key, since))


async def _usage_rows(conn: BaseDBAsyncClient, key: str, since: datetime | None) -> list[Any]:
    """Rows (key value ``k``, model, token sums) from the folded tables and the unfolded tail.

    key "day": per UTC day, from usage_day (a few rows a day), or from the hourly rollups
    until the first fold has filled it; "task": per task, from the rollups.
    """
    state = await read_fold_state(conn)
    if key == "task":
        table, column, when, event_key = "usage_rollup", "task_number", "hour", "task_number"
    elif state.days_ready:
        table, column = "usage_day", "day"
        when, event_key = "day", time_bucket(conn, "day", "occurred_at")
    else:
        table, column = "usage_rollup", "hour"
        when, event_key = "hour", time_bucket(conn, "hour", "occurred_at")
    where_rollup, where_tail, args = "", "", []
    if since is not None:
        where_rollup, where_tail, args = f" WHERE {when} >= ?", "occurred_at >= ?", [since]
    rows = await fetch(
        conn,
        f"SELECT {column} AS k, model, {_SUMS} FROM {table}{where_rollup} "  # noqa: S608
        f"GROUP BY {column}, model",
        args,
    )
    tail = await _tail(conn, state.watermark, event_key, where_tail, args)
    return [*rows, *tail]


async def _tail(
    conn: BaseDBAsyncClient,
    watermark: int,
    key: str | None = None,
    where: str = "",
    args: list[Any] | None = None,
) -> list[Any]:
    """Token sums per (``key`` as ``k``, model), or per model, of the events not folded yet
    (above ``watermark``) that also meet ``where``: what a report adds to the folded tables."""
    select, group = (f"{key} AS k, model", "k, model") if key else ("model", "model")
    extra = f" AND {where}" if where else ""
    return await fetch(
        conn,
        f"SELECT {select}, {_SUMS} FROM usage_event "  # noqa: S608
        f"WHERE {TAIL_IDS}{extra} GROUP BY {group}",
        [watermark, *(args or [])],
    )


def _by_task(rows: list[Any], prices: PriceList) -> dict[int, TaskMonth]:
    """Rows (task ``k``, model, token sums) added up per task, with their cost.

    Tokens are added per (task, model) before they are priced, so the same usage gives the same
    figure however it is split between folded rows and the tail. The figures are those of
    ``Spend.cost``, without a ``Spend`` per row: a busy summary adds up thousands of rows.
    """
    # Per (task, model): the four token counts in TOKEN_TYPES order, then the reported cost.
    sums: dict[tuple[int, str], list[Any]] = {}
    for row in rows:
        key = (int(row["k"]), row["model"])
        figures = [*_counts(row), float(row["reported"] or 0)]
        total = sums.get(key)
        if total is None:
            sums[key] = figures
        else:
            for index, value in enumerate(figures):
                total[index] += value
    tasks: dict[int, TaskMonth] = {}
    price_of = functools.cache(prices.price_for)
    # In model order: the same sums give the same float total whichever query read them.
    for (n, model), (*tokens, reported) in sorted(sums.items()):
        price = price_of(model)
        cost = price.cost_of(*tokens) if price is not None else reported
        before = tasks.get(n)
        tasks[n] = (
            TaskMonth(n, sum(tokens), cost)
            if before is None
            else TaskMonth(n, before.tokens + sum(tokens), before.cost_usd + cost)
        )
    return tasks


def _costliest(tasks: dict[int, TaskMonth]) -> list[TaskMonth]:
    return sorted(tasks.values(), key=lambda t: (-t.cost_usd, t.task_number))[:TOP_TASKS]


async def _top_tasks(
    conn: BaseDBAsyncClient, prices: PriceList, month: datetime
) -> list[TaskMonth]:
    """The month's costliest tasks.

    With usage_task_month kept at these prices: the ten (and near-ties) read along its index,
    plus those tasks with unfolded usage that can still rank (usage only adds: no other task can
    pass those ten); their figures are their folded tokens per model (usage_task_month_model, a
    few rows a task) plus the unfolded tail's, so the work follows the tail, never the data,
    and the figures are exactly those of the events. Otherwise (other prices, or before the
    first fold has filled that table) from every rollup row of the month and the tail.
    """
    if await stored_fingerprint(conn) == prices_fingerprint(prices):
        state = await read_fold_state(conn)
        tail = await _tail_by_task(conn, state.watermark, month)
        found = await candidate_tasks(conn, month, TOP_TASKS)
        # Until the first fold after migration 0009 has filled usage_task_month_model (a
        # minute at most), the general path below, exact as well.
        if found is not None and state.task_models_ready:
            added = _tail_costs(tail, prices)
            numbers = {*found, *await _tail_contenders(conn, added, month)}
            folded = await _folded_usage_of(conn, sorted(numbers), month)
            theirs = [row for row in tail if int(row["k"]) in numbers]
            return _costliest(_by_task([*folded, *theirs], prices))
    return _costliest(_by_task(await _usage_rows(conn, "task", month), prices))


def _rows(found: list[Any]) -> list[tuple[Any, str, Spend]]:
    return [(row["k"], row["model"], _spend(row)) for row in found]


async def _tail_by_task(conn: BaseDBAsyncClient, watermark: int, since: datetime) -> list[Any]:
    """The rows (task ``k``, model, token sums) of the events above the watermark since
    ``since``: the seconds since the worker's last fold (every 5 s), hundreds of rows, which
    stay rows (only the contenders' are added up exactly)."""
    # "task_number + 0": grouped by the bare column, SQLite walks the whole task_number index
    # instead of the few ids above the watermark.
    return await _tail(conn, watermark, "task_number + 0", "occurred_at >= ?", [since])


def _tail_costs(tail: list[Any], prices: PriceList) -> dict[int, float]:
    """Each task's cost in the tail rows, as ``Spend.cost`` prices them (the price of each
    model looked up once, no dict per row: this loop is most of a busy summary's work)."""
    added: dict[int, float] = defaultdict(float)
    price_of = functools.cache(prices.price_for)
    for row in tail:
        price = price_of(row["model"])
        cost = float(row["reported"] or 0) if price is None else price.cost_of(*_counts(row))
        added[int(row["k"])] += cost
    return added


async def _tail_contenders(
    conn: BaseDBAsyncClient, added: dict[int, float], month: datetime
) -> set[int]:
    """The tasks with unfolded usage that may rank among the ten: by their stored cost of the
    month plus their tail's (``added``), the ten costliest and all within NEAR_TIE_USD of the
    tenth (each other one has ten tasks of the tail that cost more), so only those are summed
    exactly."""
    if len(added) <= TOP_TASKS:
        return set(added)
    stored = await stored_costs(conn, month, sorted(added))
    costs = {number: stored.get(number, 0.0) + cost for number, cost in added.items()}
    floor = sorted(costs.values(), reverse=True)[TOP_TASKS - 1] - NEAR_TIE_USD
    return {number for number, cost in costs.items() if cost >= floor}


async def _folded_usage_of(
    conn: BaseDBAsyncClient, numbers: list[int], month: datetime
) -> list[Any]:
    """Rows (task ``k``, model, tokens) of these tasks in ``month`` as folded
    (usage_task_month_model, by its unique key: a few rows a task)."""
    if not numbers:
        return []
    marks = ", ".join("?" for _ in numbers)
    sql = (
        f"SELECT task_number AS k, model, {_FOLDED} FROM usage_task_month_model "  # noqa: S608
        f"WHERE month = ? AND task_number IN ({marks})"
    )
    return await fetch(conn, sql, [month, *numbers])


async def _running_tasks(conn: BaseDBAsyncClient) -> int:
    return await count_tasks(conn, ACTIVE_STATUS)


def _cost_block(by_model: dict[str, Spend], prices: PriceList) -> CostBlock:
    total = Spend()
    cost = 0.0
    for model, spend in by_model.items():
        total.add(spend)
        cost += spend.cost(model, prices)
    return CostBlock(total.tokens, sum(total.tokens.values()), round(cost, 6))


def period_starts(now: datetime) -> dict[str, datetime]:
    """When today, this week and this month began (UTC)."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "today": today,
        "week": today - timedelta(days=today.weekday()),
        "month": today.replace(day=1),
    }


async def cost_summary(prices: PriceList, now: datetime | None = None) -> CostSummary:
    """Tokens and cost for today, this week and this month; by model; top tasks this month."""
    now = now or datetime.now(UTC)
    starts = period_starts(now)
    since = min(starts.values())
    async with snapshot_transaction() as conn:
        daily = await _usage_by(conn, "day", since)
        top = await _top_tasks(conn, prices, starts["month"])
    periods: dict[str, dict[str, Spend]] = {name: defaultdict(Spend) for name in starts}
    for day, model, spend in daily:
        at = as_datetime(day)
        for name, start in starts.items():
            if at >= start:
                periods[name][model].add(spend)
    month = periods["month"]
    by_model = [
        ModelCost(model, _cost_block({model: spend}, prices), prices.price_for(model) is not None)
        for model, spend in sorted(month.items())
    ]
    titles = dict(
        await Task.filter(number__in=[t.task_number for t in top]).values_list("number", "title")
    )
    return CostSummary(
        generated_at=now,
        today=_cost_block(periods["today"], prices),
        week=_cost_block(periods["week"], prices),
        month=_cost_block(month, prices),
        by_model=by_model,
        top_tasks=[
            TaskCost(
                format_task_id(t.task_number),
                titles.get(t.task_number),
                t.tokens,
                round(t.cost_usd, 6),
            )
            for t in top
        ],
        unpriced_models=sorted(m for m in month if prices.price_for(m) is None),
    )


async def cost_timeseries(
    prices: PriceList, days: int, now: datetime | None = None
) -> list[DayCost]:
    """One bucket per UTC day for the last ``days`` days, today included, oldest first."""
    now = now or datetime.now(UTC)
    first_day = period_starts(now)["today"] - timedelta(days=days - 1)
    async with snapshot_transaction() as conn:
        daily = await _usage_by(conn, "day", first_day)
    by_day: dict[date, dict[str, Spend]] = defaultdict(lambda: defaultdict(Spend))
    for day, model, spend in daily:
        by_day[as_datetime(day).date()][model].add(spend)
    return [
        DayCost(day, _cost_block(by_day.get(day, {}), prices))
        for day in (first_day.date() + timedelta(days=i) for i in range(days))
    ]


async def usage_today(now: datetime | None = None) -> tuple[dict[str, Spend], int]:
    """Today's spend per model and the number of running tasks."""
    today = period_starts(now or datetime.now(UTC))["today"]
    async with snapshot_transaction() as conn:
        daily = await _usage_by(conn, "day", today)
        running = await _running_tasks(conn)
    by_model: dict[str, Spend] = defaultdict(Spend)
    for _, model, spend in daily:
        by_model[model].add(spend)
    return dict(by_model), running


async def usage_totals() -> tuple[dict[str, Spend], int]:
    """All-time spend per model (totals plus tail) and the number of running tasks."""
    async with snapshot_transaction() as conn:
        watermark = await read_watermark(conn)
        totals = await fetch(
            conn,
            f"SELECT model, {_FOLDED} FROM usage_total",  # noqa: S608
        )
        tail = await _tail(conn, watermark)
        running = await _running_tasks(conn)
    by_model: dict[str, Spend] = defaultdict(Spend)
    for row in [*totals, *tail]:
        by_model[row["model"]].add(_spend(row))
    return dict(by_model), running


async def usage_by_task(numbers: list[int], prices: PriceList) -> dict[int, tuple[int, float]]:
    """(total tokens, cost) of each of these tasks: every page of the task list asks.

    Once the aggregation has filled usage_task_month_model, each task's folded tokens come from
    there (by its task_number index) and only the events above the watermark from usage_event,
    in one snapshot, as the top tasks do: the events' figures, at a cost that does not grow
    with a task's history. Before, from the events (by their task_number index).
    """
    if not numbers:
        return {}
    tasks = f"task_number IN ({', '.join('?' for _ in numbers)})"
    async with snapshot_transaction() as conn:
        state = await read_fold_state(conn)
        if state.task_models_ready:
            rows = await fetch(
                conn,
                f"SELECT task_number AS k, model, {_FOLDED} "  # noqa: S608
                f"FROM usage_task_month_model WHERE {tasks}",
                numbers,
            )
            rows += await _tail(conn, state.watermark, "task_number", tasks, numbers)
        else:
            rows = await fetch(
                conn,
                f"SELECT task_number AS k, model, {_SUMS} FROM usage_event "  # noqa: S608
                f"WHERE {tasks} GROUP BY k, model",
                numbers,
            )
    return {n: (t.tokens, t.cost_usd) for n, t in _by_task(rows, prices).items()}
