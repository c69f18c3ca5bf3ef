"""Folding usage events into hourly rollups: exact, idempotent, O(new events), safe to kill.

In process on SQLite and PostgreSQL; the crash test kills a real `orc fold-usage` process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from orc.db import default_connection
from orc.db.models import Task
from orc.db.sql import fetch, is_postgres
from orc.db.url import DatabaseUrl
from orc.tasks.lifecycle import create_task
from orc.usage.cost import cost_summary, cost_timeseries, usage_by_task, usage_totals
from orc.usage.pricing import DEFAULT_PRICES, TOKEN_TYPES, Price, PriceList
from orc.usage.recording import UsageRecord, record_usage
from orc.usage.rollups import CHUNK_EVENTS, FOLD_LOCK_KEY, fold_usage, read_watermark
from tests.support import ORC, base_env, run_orc

PRICES = PriceList(dict(DEFAULT_PRICES))
SONNET, HAIKU, OPUS, UNPRICED = (
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "claude-opus-4-5",
    "acme-llm-1",
)
Tokens = dict[str, int]


@dataclass(frozen=True)
class Use:
    task: int
    model: str
    at: datetime
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    @property
    def tokens(self) -> Tokens:
        return {kind: getattr(self, kind) for kind in TOKEN_TYPES}

    @property
    def hour(self) -> datetime:
        return self.at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def at(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def record(uses: Iterable[Use]) -> None:
    """Record through orc's own write path, one call per task."""
    by_task: dict[int, list[UsageRecord]] = defaultdict(list)
    for use in uses:
        by_task[use.task].append(
            UsageRecord(
                model=use.model,
                phase="p",
                occurred_at=use.at,
                input_tokens=use.input,
                output_tokens=use.output,
                cache_read_tokens=use.cache_read,
                cache_write_tokens=use.cache_write,
            )
        )
    for task, records in by_task.items():
        await record_usage(task, records)


def plus(a: Tokens, b: Tokens) -> Tokens:
    return {kind: a.get(kind, 0) + b.get(kind, 0) for kind in TOKEN_TYPES}


def zero() -> Tokens:
    return dict.fromkeys(TOKEN_TYPES, 0)


# --- reading what the fold wrote ----------------------------------------------------------------

_COLUMNS = "events, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens"


def _row_counts(row: Any) -> tuple[int, Tokens]:
    return int(row["events"]), {kind: int(row[f"{kind}_tokens"]) for kind in TOKEN_TYPES}


def _as_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


async def rollups() -> dict[tuple[datetime, str, int], tuple[int, Tokens]]:
    rows = await fetch(
        default_connection(), f"SELECT hour, model, task_number, {_COLUMNS} FROM usage_rollup"
    )
    found = {}
    for row in rows:
        key = (_as_utc(row["hour"]), row["model"], int(row["task_number"]))
        assert key not in found, f"two rollup rows for {key}"
        found[key] = _row_counts(row)
    return found


async def totals() -> dict[str, tuple[int, Tokens]]:
    rows = await fetch(default_connection(), f"SELECT model, {_COLUMNS} FROM usage_total")
    return {row["model"]: _row_counts(row) for row in rows}


def expected_rollups(uses: Iterable[Use]) -> dict[tuple[datetime, str, int], tuple[int, Tokens]]:
    found: dict[tuple[datetime, str, int], tuple[int, Tokens]] = {}
    for use in uses:
        key = (use.hour, use.model, use.task)
        events, tokens = found.get(key, (0, zero()))
        found[key] = (events + 1, plus(tokens, use.tokens))
    return found


def expected_totals(uses: Iterable[Use]) -> dict[str, tuple[int, Tokens]]:
    found: dict[str, tuple[int, Tokens]] = {}
    for use in uses:
        events, tokens = found.get(use.model, (0, zero()))
        found[use.model] = (events + 1, plus(tokens, use.tokens))
    return found


async def assert_folded(uses: list[Use]) -> None:
    assert await rollups() == expected_rollups(uses)
    assert await totals() == expected_totals(uses)


async def max_event_id() -> int:
    rows = await fetch(default_connection(), "SELECT MAX(id) AS m FROM usage_event")
    return int(rows[0]["m"] or 0)


# --- exact, idempotent, incremental -------------------------------------------------------------


def _spread(count: int, start: datetime, tasks: int = 3) -> list[Use]:
    """Events over several models, tasks and hours, with awkward minutes and sizes."""
    models = [SONNET, HAIKU, OPUS, UNPRICED, f"{SONNET}-20250929"]
    return [
        Use(
            task=1 + n % tasks,
            model=models[n % len(models)],
            at=start + timedelta(minutes=37 * n, microseconds=n),
            input=1000 * n + 1,
            output=(n * 7919) % 100_000,
            cache_read=(n * 104_729) % 1_000_000,
            cache_write=n % 13,
        )
        for n in range(count)
    ]


async def test_fold_is_exact_idempotent_and_touches_only_new_events(store):
    for title in ("one", "two", "three"):
        await create_task(title)
    uses = _spread(240, at("2026-03-30T21:00:00"))
    uses += [
        # The edges of an hour, and a time given in another zone (10:59:59.999999 UTC).
        Use(1, SONNET, at("2026-04-02T10:59:59.999999"), input=1),
        Use(1, SONNET, at("2026-04-02T11:00:00"), input=2),
        Use(1, SONNET, at("2026-04-02T16:29:59.999999+05:30"), input=4),
        Use(2, HAIKU, at("2026-04-02T06:00:00-05:00"), output=8),
    ]
    await record(uses)
    assert len({u.hour for u in uses}) > 100  # many hours, over several days

    first = await fold_usage(PRICES)
    assert (first.events, first.watermark) == (len(uses), await max_event_id())
    await assert_folded(uses)
    rollup = await rollups()
    assert rollup[(at("2026-04-02T10:00:00"), SONNET, 1)][1]["input"] == 1 + 4
    assert rollup[(at("2026-04-02T11:00:00"), SONNET, 1)][1]["input"] == 2
    assert rollup[(at("2026-04-02T11:00:00"), HAIKU, 2)][1]["output"] == 8

    # Idempotent: nothing new, nothing folded, nothing changed.
    again = await fold_usage(PRICES)
    assert (again.events, again.watermark) == (0, first.watermark)
    await assert_folded(uses)

    # Only the new events are folded; they add to existing hours and make new ones.
    more = [Use(u.task, u.model, u.at + timedelta(seconds=1), input=3, output=5) for u in uses[:40]]
    more += _spread(25, at("2026-05-01T00:00:00"))
    await record(more)
    uses += more
    second = await fold_usage(PRICES)
    assert (second.events, second.watermark) == (len(more), await max_event_id())
    await assert_folded(uses)

    # In small chunks (one transaction each) it comes out the same.
    chunked = _spread(53, at("2026-03-01T00:00:00"), tasks=2)
    await record(chunked)
    uses += chunked
    third = await fold_usage(PRICES, chunk=10)
    assert third.events == len(chunked)
    await assert_folded(uses)

    # A fold asked to stop (a worker shutting down) ends after the chunk in progress; the next
    # one continues from there.
    stopped = _spread(25, at("2026-03-15T00:00:00"), tasks=2)
    await record(stopped)
    uses += stopped
    stopping = asyncio.Event()
    stopping.set()
    assert (await fold_usage(PRICES, chunk=10, stopping=stopping)).events == 10
    assert (await fold_usage(PRICES, chunk=10)).events == 15
    await assert_folded(uses)

    # Two folds at once never fold an event twice.
    racing = _spread(120, at("2026-02-01T00:00:00"))
    await record(racing)
    uses += racing
    results = await asyncio.gather(*(fold_usage(PRICES, chunk=17) for _ in range(3)))
    assert sum(r.events for r in results) == len(racing)
    await assert_folded(uses)
    assert (await fold_usage(PRICES)).events == 0


async def test_folding_while_usage_is_recorded_misses_nothing_and_counts_nothing_twice(store):
    for title in ("one", "two", "three"):
        await create_task(title)
    start = at("2026-04-01T00:00:00")
    recorded: list[Use] = []
    writers_done = asyncio.Event()

    async def writer(w: int) -> None:
        for n in range(30):
            batch = [
                Use(
                    1 + (w + n) % 3,
                    (SONNET, HAIKU)[k % 2],
                    start + timedelta(minutes=w * 97 + n * 13 + k),
                    input=w + 1,
                    output=n + k,
                )
                for k in range(1 + n % 4)
            ]
            await record(batch)
            recorded.extend(batch)

    async def folder() -> int:
        folded = 0
        while not writers_done.is_set():
            folded += (await fold_usage(PRICES, chunk=7)).events
            await asyncio.sleep(0)
        return folded

    folding = asyncio.create_task(folder())
    await asyncio.gather(*(writer(w) for w in range(5)))
    writers_done.set()
    folded = await folding + (await fold_usage(PRICES)).events
    assert folded == len(recorded) == 5 * sum(1 + n % 4 for n in range(30))
    await assert_folded(recorded)


# --- cost reports: rollups plus the unfolded tail -----------------------------------------------

NOW = at("2026-04-02T15:30:00")  # a Thursday; the week began on Monday 30 March
STARTS = {
    "today": at("2026-04-02T00:00:00"),
    "week": at("2026-03-30T00:00:00"),
    "month": at("2026-04-01T00:00:00"),
}
TITLES = {1: "alpha", 2: "beta", 3: "gamma"}

EARLY = [
    Use(1, SONNET, at("2026-02-10T09:00:00"), input=5_000_000),  # an older month
    Use(2, HAIKU, at("2026-03-29T23:59:59.999999"), output=100_000),  # just before the week
    Use(2, SONNET, at("2026-03-30T00:00:00"), input=200_000),  # the week's first instant
    Use(3, OPUS, at("2026-03-31T12:00:00"), output=10_000, cache_write=1_000),
    Use(1, UNPRICED, at("2026-04-01T00:00:00"), input=123),  # the month's first instant
    Use(3, SONNET, at("2026-04-01T23:59:59.999999"), cache_read=1_000_000),
    Use(1, SONNET, at("2026-04-02T00:00:00"), input=1_000, output=2_000),  # today
    Use(2, HAIKU, at("2026-04-02T10:59:59.999999"), input=300_000),
    Use(2, HAIKU, at("2026-04-02T11:00:00"), output=40_000),
    Use(1, f"{SONNET}-20250929", at("2026-04-02T20:59:00+05:30"), input=70_000),
    Use(3, UNPRICED, at("2026-04-02T13:00:00"), output=7),
]
LATE = [
    Use(2, HAIKU, at("2026-04-02T10:15:00"), input=5),  # into an hour that is already folded
    Use(1, SONNET, at("2026-04-02T12:30:00"), input=10),
    Use(3, HAIKU, at("2026-03-31T01:00:00"), output=20),
    Use(2, SONNET, at("2026-01-15T00:00:00"), input=1),
    Use(3, OPUS, at("2026-04-01T08:00:00"), input=50_000, output=3_000),
]


def _block(by_model: dict[str, Tokens]) -> dict[str, Any]:
    tokens = zero()
    cost = 0.0
    for model, counts in by_model.items():
        tokens = plus(tokens, counts)
        cost += PRICES.cost(model, counts)
    return {"tokens": tokens, "total_tokens": sum(tokens.values()), "cost_usd": cost}


def expected_summary(uses: list[Use]) -> dict[str, Any]:
    periods: dict[str, dict[str, Tokens]] = {name: {} for name in STARTS}
    per_task: dict[int, dict[str, Tokens]] = defaultdict(dict)
    for use in uses:
        for name, start in STARTS.items():
            if use.at >= start:
                periods[name][use.model] = plus(periods[name].get(use.model, zero()), use.tokens)
        if use.at >= STARTS["month"]:
            per_task[use.task][use.model] = plus(
                per_task[use.task].get(use.model, zero()), use.tokens
            )
    month = periods["month"]
    top = sorted(per_task, key=lambda n: (-_block(per_task[n])["cost_usd"], n))
    return {
        **{name: _block(periods[name]) for name in STARTS},
        "by_model": [
            {"model": m, **_block({m: month[m]}), "priced": PRICES.price_for(m) is not None}
            for m in sorted(month)
        ],
        "top_tasks": [
            {
                "task_id": f"TASK-{n:03d}",
                "title": TITLES[n],
                "total_tokens": _block(per_task[n])["total_tokens"],
                "cost_usd": _block(per_task[n])["cost_usd"],
            }
            for n in top
        ],
        "unpriced_models": sorted(m for m in month if PRICES.price_for(m) is None),
    }


def expected_series(uses: list[Use], days: int) -> list[dict[str, Any]]:
    first = STARTS["today"] - timedelta(days=days - 1)
    by_day: dict[str, dict[str, Tokens]] = defaultdict(dict)
    for use in uses:
        day = use.at.astimezone(UTC).date().isoformat()
        by_day[day][use.model] = plus(by_day[day].get(use.model, zero()), use.tokens)
    return [
        {"date": day, **_block(by_day.get(day, {}))}
        for day in ((first + timedelta(days=i)).date().isoformat() for i in range(days))
    ]


def expected_all_time(uses: list[Use]) -> dict[str, Tokens]:
    found: dict[str, Tokens] = {}
    for use in uses:
        found[use.model] = plus(found.get(use.model, zero()), use.tokens)
    return found


async def token_totals() -> tuple[dict[str, Tokens], int]:
    """usage_totals' tokens per model, and the running tasks."""
    by_model, running = await usage_totals()
    return {model: spend.tokens for model, spend in by_model.items()}, running


def assert_same(actual: Any, expected: Any, where: str = "") -> None:
    """Equal, with money compared to the micro-dollar (reports round to 6 places)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), (where, actual, expected)
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (where, actual, expected)
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, abs=1.5e-6), (where, actual, expected)
    else:
        assert actual == expected, (where, actual, expected)


async def assert_reports(uses: list[Use], running: int) -> None:
    summary = (await cost_summary(PRICES, now=NOW)).to_json()
    assert summary.pop("generated_at") == NOW.isoformat()
    assert_same(summary, expected_summary(uses), "summary")
    for days in (1, 4, 5, 70):
        series = [day.to_json() for day in await cost_timeseries(PRICES, days, now=NOW)]
        assert_same(series, expected_series(uses, days), f"timeseries({days})")
    assert await token_totals() == (expected_all_time(uses), running)


async def start_running(number: int) -> None:
    """What a job worker's claim does to a task (these tests count running tasks)."""
    await Task.filter(number=number).update(status="running")


async def test_cost_reports_are_exact_before_and_after_folding(store):
    for number in sorted(TITLES):
        await create_task(TITLES[number])
    await start_running(2)
    await record(EARLY)
    # A hand check of the expectation itself: today is 1k in + 2k out of sonnet ($0.033),
    # 70k in of dated sonnet ($0.21), 300k in + 40k out of haiku ($0.5), 7 unpriced out.
    assert expected_summary(EARLY)["today"]["cost_usd"] == pytest.approx(0.033 + 0.21 + 0.5)
    summary = expected_summary(EARLY)
    assert [t["task_id"] for t in summary["top_tasks"]] == ["TASK-002", "TASK-003", "TASK-001"]
    assert summary["unpriced_models"] == [UNPRICED]
    assert summary["week"]["tokens"]["output"] == 10_000 + 2_000 + 40_000 + 7

    await assert_reports(EARLY, running=1)  # nothing folded yet: all from the tail
    assert (await fold_usage(PRICES)).events == len(EARLY)
    await assert_reports(EARLY, running=1)  # all from rollups
    await record(LATE)
    await start_running(1)
    await assert_reports(EARLY + LATE, running=2)  # rollups plus the tail
    assert (await fold_usage(PRICES)).events == len(LATE)
    await assert_reports(EARLY + LATE, running=2)


# --- killing a fold -----------------------------------------------------------------------------

BASE = "2026-04-02 12:00:00"
GENERATED = 102_000  # 51 chunks of a fold: a kill after the first leaves most of them to do


async def insert_generated_events(count: int) -> None:
    """``count`` usage events made by the database itself (much faster than inserting rows)."""
    conn = default_connection()
    columns = (
        "task_number, phase, model, input_tokens, output_tokens, cache_read_tokens, "
        "cache_write_tokens, occurred_at"
    )
    values = "i % 10 + 1, 'p', 'model-' || (i % 3), i % 1000, (i * 7) % 500, i % 3, i % 11"
    if is_postgres(conn):
        sql = (
            f"INSERT INTO usage_event ({columns}) SELECT {values}, "
            f"TIMESTAMPTZ '{BASE}+00' - (i % 48) * INTERVAL '1 hour' "
            "FROM generate_series(1, $1) AS i"
        )
    else:
        sql = (
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?) "
            f"INSERT INTO usage_event ({columns}) SELECT {values}, "
            f"datetime('{BASE}', '-' || (i % 48) || ' hours') || '+00:00' FROM s"
        )
    await conn.execute_query(sql, [count])


def generated_expectation(count: int) -> tuple[dict, dict[str, Tokens]]:
    """Rollups and per-model totals of insert_generated_events(count), worked out here."""
    base = at(BASE)
    uses = (
        Use(
            i % 10 + 1,
            f"model-{i % 3}",
            base - timedelta(hours=i % 48),
            i % 1000,
            (i * 7) % 500,
            i % 3,
            i % 11,
        )
        for i in range(1, count + 1)
    )
    rollup: dict[tuple[datetime, str, int], tuple[int, Tokens]] = {}
    for use in uses:
        key = (use.at, use.model, use.task)
        events, tokens = rollup.get(key, (0, zero()))
        rollup[key] = (events + 1, plus(tokens, use.tokens))
    by_model: dict[str, Tokens] = {}
    for (_, model, _), (_, tokens) in rollup.items():
        by_model[model] = plus(by_model.get(model, zero()), tokens)
    return rollup, by_model


async def sums_up_to(watermark: int) -> tuple[dict[str, tuple[int, Tokens]], dict[int, Tokens]]:
    """Per-model (events, tokens) and per-task tokens of the events with id <= watermark."""
    conn = default_connection()
    sums = "COUNT(*) AS events, " + ", ".join(
        f"SUM({kind}_tokens) AS {kind}_tokens" for kind in TOKEN_TYPES
    )
    by_model = await fetch(
        conn, f"SELECT model, {sums} FROM usage_event WHERE id <= ? GROUP BY model", [watermark]
    )
    by_task = await fetch(
        conn,
        f"SELECT task_number, {sums} FROM usage_event WHERE id <= ? GROUP BY task_number",
        [watermark],
    )
    return (
        {row["model"]: _row_counts(row) for row in by_model},
        {int(row["task_number"]): _row_counts(row)[1] for row in by_task},
    )


async def assert_consistent_at(watermark: int) -> None:
    """Rollups and totals hold exactly the events up to the watermark, no more, no less."""
    by_model, by_task = await sums_up_to(watermark)
    assert await totals() == by_model
    rolled_by_task: dict[int, Tokens] = {}
    events = 0
    for (_, _, task), (count, tokens) in (await rollups()).items():
        rolled_by_task[task] = plus(rolled_by_task.get(task, zero()), tokens)
        events += count
    assert rolled_by_task == by_task
    assert events == sum(count for count, _ in by_model.values())


@pytest.mark.slow
async def test_a_fold_killed_mid_way_leaves_exact_totals_and_a_rerun_finishes(store, tmp_path):
    assert GENERATED >= 50 * CHUNK_EVENTS  # the fold has many transactions to go at the kill
    await insert_generated_events(GENERATED)
    conn = default_connection()
    last_id = await max_event_id()
    expected_rollup, expected_by_model = generated_expectation(GENERATED)

    env = base_env(tmp_path)
    env["DATABASE_URL"] = store
    fold = subprocess.Popen(
        [*ORC, "fold-usage"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # Kill it the moment its first transaction has committed: later ones are under way.
        deadline = time.monotonic() + 60
        while await read_watermark(conn) == 0:
            assert fold.poll() is None, f"fold-usage ended early: {fold.communicate()}"
            assert time.monotonic() < deadline, "fold-usage never committed its first chunk"
            await asyncio.sleep(0.002)
        fold.send_signal(signal.SIGKILL)
    finally:
        if fold.poll() is None:
            fold.kill()
        fold.communicate()
    assert fold.returncode == -signal.SIGKILL

    watermark = await read_watermark(conn)
    assert watermark < last_id, "the kill came too late: the test needs a fold still running"
    # What was folded is whole transactions, no part of the one the kill cut short.
    rows = await fetch(conn, "SELECT COUNT(*) AS n FROM usage_event WHERE id <= ?", [watermark])
    folded = int(rows[0]["n"])
    assert folded and folded % CHUNK_EVENTS == 0, folded
    await assert_consistent_at(watermark)
    # The reports are exact even now: folded totals plus the unfolded tail.
    assert await token_totals() == (expected_by_model, 0)

    rerun = await asyncio.to_thread(run_orc, ["fold-usage"], env)
    assert rerun.returncode == 0, rerun.stderr
    assert f"folded {GENERATED - folded} event(s); watermark {last_id}" in rerun.stdout
    assert await rollups() == expected_rollup
    assert await totals() == {
        model: (GENERATED // 3, tokens) for model, tokens in expected_by_model.items()
    }
    assert await token_totals() == (expected_by_model, 0)
    assert "folded 0 event(s)" in (await asyncio.to_thread(run_orc, ["fold-usage"], env)).stdout


# --- what the agent reported ---------------------------------------------------------------------


async def test_a_model_without_a_price_costs_what_the_agent_reported_before_and_after_folding(
    store,
):
    await create_task("Spend")
    when = NOW - timedelta(hours=1)
    await record_usage(
        1,
        [
            UsageRecord(UNPRICED, "implement", when, input_tokens=1000, reported_cost_usd=0.25),
            UsageRecord(UNPRICED, "review", when, output_tokens=10, reported_cost_usd=0.125),
            # A priced model's own figure is ignored: orc's price list decides.
            UsageRecord(SONNET, "implement", when, input_tokens=1000, reported_cost_usd=9.0),
        ],
    )
    sonnet = 1000 * 3.0 / 1_000_000
    for folded in (False, True):
        summary = (await cost_summary(PRICES, now=NOW)).to_json()
        by_model = {row["model"]: row for row in summary["by_model"]}
        assert by_model[UNPRICED]["cost_usd"] == pytest.approx(0.375), folded
        assert by_model[UNPRICED]["priced"] is False
        assert summary["today"]["cost_usd"] == pytest.approx(0.375 + sonnet)
        assert summary["top_tasks"][0]["cost_usd"] == pytest.approx(0.375 + sonnet)
        series = await cost_timeseries(PRICES, 1, now=NOW)
        assert series[0].cost.cost_usd == pytest.approx(0.375 + sonnet)
        totals, _ = await usage_totals()
        assert totals[UNPRICED].cost(UNPRICED, PRICES) == pytest.approx(0.375)
        assert totals[SONNET].cost(SONNET, PRICES) == pytest.approx(sonnet)
        await fold_usage(PRICES)


# --- the month's top tasks, kept per month and task by the fold ----------------------------------


def expected_top(uses: list[Use], prices: PriceList) -> list[tuple[str, int, float]]:
    """(task id, tokens, cost) of the ten costliest tasks since STARTS["month"], worked out here."""
    per_task: dict[int, dict[str, Tokens]] = defaultdict(dict)
    for use in uses:
        if use.at >= STARTS["month"]:
            per_task[use.task][use.model] = plus(
                per_task[use.task].get(use.model, zero()), use.tokens
            )
    costs = {n: sum(prices.cost(m, t) for m, t in by.items()) for n, by in per_task.items()}
    top = sorted(costs, key=lambda n: (-costs[n], n))[:10]
    return [
        (f"TASK-{n:03d}", sum(sum(t.values()) for t in per_task[n].values()), costs[n]) for n in top
    ]


async def assert_top(uses: list[Use], prices: PriceList, where: str) -> None:
    summary = (await cost_summary(prices, now=NOW)).to_json()
    got = [(t["task_id"], t["total_tokens"], t["cost_usd"]) for t in summary["top_tasks"]]
    assert_same([list(t) for t in got], [list(t) for t in expected_top(uses, prices)], where)


async def test_top_tasks_stay_exact_with_ties_the_tail_new_prices_and_later_usage(store):
    for n in range(1, 15):
        await create_task(f"task {n}")
    today = at("2026-04-02T09:00:00")
    # Twelve tasks that cost exactly the same, one that costs more, one unpriced (free).
    uses = [Use(n, SONNET, today, input=1000) for n in range(1, 13)]
    uses += [Use(13, OPUS, today, output=2000), Use(14, UNPRICED, today, input=5)]
    uses += [Use(13, HAIKU, at("2026-03-31T09:00:00"), output=10**7)]  # last month
    await record(uses)
    await assert_top(uses, PRICES, "before any fold (from the events)")
    await fold_usage(PRICES)
    await assert_top(uses, PRICES, "folded: ties go to the lowest numbers")

    # Unfolded usage lifts one of the tied tasks above the others.
    tail = [Use(12, SONNET, today, input=1)]
    await record(tail)
    uses += tail
    await assert_top(uses, PRICES, "with the unfolded tail")

    # Other prices: a reader with them is exact before the fold rebuilds the table, and after.
    other = PriceList({**DEFAULT_PRICES, SONNET: Price(30.0, 15.0, 0.3, 3.75)})
    await assert_top(uses, other, "other prices, table kept at the old ones")
    await fold_usage(other)
    await assert_top(uses, other, "other prices, table rebuilt")
    await assert_top(uses, PRICES, "the old prices, table kept at the new ones")

    # Usage dated after this month counts in this month's figures, as it always did.
    later = [Use(5, OPUS, at("2026-05-03T00:00:00"), output=10**6)]
    await record(later)
    uses += later
    await fold_usage(other)
    await assert_top(uses, other, "usage dated next month")


async def test_top_tasks_add_unfolded_usage_to_each_tasks_folded_usage_model_by_model(store):
    for n in range(1, 26):
        await create_task(f"task {n}")
    today = at("2026-04-02T09:00:00")
    # Folded: task n costs more the higher n is (the ten costliest: 16-25), in two models.
    folded = [Use(n, SONNET, today, input=1000 * n) for n in range(1, 26)]
    folded += [Use(n, HAIKU, at("2026-04-01T00:00:00"), output=n) for n in range(1, 26)]
    await record(folded)
    await fold_usage(PRICES)
    await assert_top(folded, PRICES, "folded")

    # Not folded yet, for more than ten tasks: three climb to the top, task 4 (in a model it
    # had not used) to the middle of the ten, the others hardly move; last month's usage counts
    # not.
    tail = [Use(n, SONNET, today, input=n * 10**6) for n in (1, 2, 3)]
    tail += [Use(4, OPUS, today, input=12_000, cache_write=1)]
    tail += [Use(n, HAIKU, today, output=1) for n in (*range(5, 13), 25)]
    tail += [Use(6, OPUS, at("2026-03-31T23:59:59"), output=10**7)]
    await record(tail)
    await assert_top(folded + tail, PRICES, "folded usage plus the tail")
    await fold_usage(PRICES)
    await assert_top(folded + tail, PRICES, "all folded")


async def test_the_first_fold_after_upgrading_fills_the_daily_and_monthly_tables(store):
    """A database folded before migrations 0007 and 0009: rollups, but not the tables they add."""
    for title in TITLES.values():
        await create_task(title)
    await record(EARLY)
    await fold_usage(PRICES)
    conn = default_connection()
    for statement in (
        "DELETE FROM usage_day",
        "DELETE FROM usage_task_month",
        "DELETE FROM usage_task_month_model",
        "DELETE FROM server_state WHERE key IN "
        "('usage_day_filled', 'usage_task_month_prices', 'usage_task_month_model_filled')",
    ):
        await fetch(conn, statement)
    await record(LATE)
    await assert_reports(EARLY + LATE, running=0)  # from the rollups and the tail meanwhile
    await assert_top(EARLY + LATE, PRICES, "before the first fold")
    assert (await fold_usage(PRICES)).events == len(LATE)
    days = await fetch(conn, "SELECT COUNT(*) AS n FROM usage_day")
    assert int(days[0]["n"]) == len({(u.at.astimezone(UTC).date(), u.model) for u in EARLY + LATE})
    await assert_reports(EARLY + LATE, running=0)  # from the filled tables
    await assert_top(EARLY + LATE, PRICES, "from the filled tables")
    # A task's tokens per model, as the rollups of its month: what the top tasks read.
    months = await fetch(conn, "SELECT COUNT(*) AS n FROM usage_task_month_model")
    assert int(months[0]["n"]) == len(
        {(u.at.astimezone(UTC).strftime("%Y-%m"), u.task, u.model) for u in EARLY + LATE}
    )


def listed_totals(uses: list[Use]) -> dict[int, tuple[int, float]]:
    """Each task's (tokens, cost) worked out here from the events: tokens added per model,
    then priced."""
    by_model: dict[tuple[int, str], Tokens] = defaultdict(zero)
    for use in uses:
        by_model[(use.task, use.model)] = plus(by_model[(use.task, use.model)], use.tokens)
    found: dict[int, tuple[int, float]] = {}
    for (task, model), tokens in by_model.items():
        before_tokens, before_cost = found.get(task, (0, 0.0))
        found[task] = (
            before_tokens + sum(tokens.values()),
            before_cost + PRICES.cost(model, tokens),
        )
    return found


async def test_the_task_lists_totals_are_the_events_before_after_and_between_folds(store):
    for title in ("one", "two", "three", "no usage"):
        await create_task(title)
    uses = _spread(150, at("2026-03-01T00:00:00"))
    await record(uses)

    def same(got: dict[int, tuple[int, float]], expected: dict[int, tuple[int, float]]) -> None:
        assert got.keys() == expected.keys()
        for task, (tokens, cost) in expected.items():
            assert got[task][0] == tokens
            assert got[task][1] == pytest.approx(cost, rel=1e-12)

    # Before any fold: from the events.
    same(await usage_by_task([1, 2, 3, 4], PRICES), listed_totals(uses))
    folded = await fold_usage(PRICES)
    same(await usage_by_task([1, 2, 3, 4], PRICES), listed_totals(uses))
    # A tail above the watermark, partly of models and months the folded rows already hold.
    more = _spread(40, at("2026-04-02T10:00:00"))
    await record(more)
    same(await usage_by_task([1, 2, 3, 4], PRICES), listed_totals(uses + more))
    assert await usage_by_task([3], PRICES) == {3: listed_totals(uses + more)[3]}
    # The folded part comes from the folded table, not from reading every event again: with
    # the folded events gone, the totals stay.
    await fetch(default_connection(), "DELETE FROM usage_event WHERE id <= ?", [folded.watermark])
    same(await usage_by_task([1, 2, 3, 4], PRICES), listed_totals(uses + more))


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_cost_reports_read_the_unfolded_tail_by_its_ids_when_postgres_has_no_statistics(
    store, monkeypatch
):
    """A cluster with autovacuum off never gathers statistics, so every query is planned from
    guesses. The cost reports must still read only the events above the watermark (along the
    primary key), not scan all of usage_event, or each report slows down as the table grows."""
    conn = default_connection()
    await conn.execute_script("ALTER TABLE usage_event SET (autovacuum_enabled = false)")
    await insert_generated_events(50_000)
    await fold_usage(PRICES)
    await insert_generated_events(200)  # the unfolded tail
    never_analysed = await fetch(
        conn,
        "SELECT reltuples FROM pg_class WHERE relname = 'usage_event' AND reltuples < 0",
    )
    assert never_analysed, "the table must have no statistics for this test to mean anything"

    sent: list[tuple[str, list[Any]]] = []

    async def recording_fetch(conn: Any, sql: str, values: Any = ()) -> list[Any]:
        sent.append((sql, list(values)))
        return await fetch(conn, sql, values)

    monkeypatch.setattr("orc.usage.cost.fetch", recording_fetch)
    now = at(BASE)
    await cost_summary(PRICES, now=now)
    await cost_timeseries(PRICES, 30, now=now)
    await usage_totals()
    tail_reads = [(sql, values) for sql, values in sent if "FROM usage_event" in sql]
    assert len(tail_reads) >= 3

    def scanned(plan: dict[str, Any]) -> list[str]:
        found = [plan["Node Type"]] if plan.get("Relation Name") == "usage_event" else []
        for child in plan.get("Plans", []):
            found += scanned(child)
        return found

    for sql, values in tail_reads:
        rows = await fetch(conn, f"EXPLAIN (FORMAT JSON) {sql}", values)
        plan = json.loads(rows[0]["QUERY PLAN"])[0]["Plan"]
        assert "Seq Scan" not in scanned(plan), sql
        assert scanned(plan), sql


@contextlib.asynccontextmanager
async def _fold_lock_held_elsewhere(database_url: str) -> AsyncIterator[Callable[[], Any]]:
    """Hold what a fold locks (SQLite's write lock, or the fold's advisory lock on PostgreSQL)
    from another connection; yields a check, from a third connection, that it is held."""
    url = DatabaseUrl(database_url)
    if url.is_sqlite:
        path = url.sqlite_path
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")

        async def held() -> bool:
            probe = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                probe.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                return True
            finally:
                probe.close()
            return False

        try:
            yield held
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return

    pg_holder = await asyncpg.connect(**url.asyncpg_connect_args())
    await pg_holder.execute("SELECT pg_advisory_lock($1)", FOLD_LOCK_KEY)

    async def held_pg() -> bool:
        other = await asyncpg.connect(**url.asyncpg_connect_args())
        try:
            return not await other.fetchval("SELECT pg_try_advisory_lock($1)", FOLD_LOCK_KEY)
        finally:
            await other.close()

    try:
        yield held_pg
    finally:
        await pg_holder.close()


async def test_an_idle_fold_takes_no_lock_so_writers_never_wait_for_it(store):
    """The worker folds every 5 s; with nothing new to fold it must not take the fold's lock
    (on SQLite the database's one write lock, for which every writer would wait)."""
    await create_task("one")
    uses = [Use(1, SONNET, at("2026-04-02T09:00:00"), input=10)]
    await record(uses)
    folded = await fold_usage(PRICES)
    assert folded.events == 1
    async with _fold_lock_held_elsewhere(store) as held:
        assert await held()
        idle = await asyncio.wait_for(fold_usage(PRICES), 5)
        assert (idle.events, idle.watermark) == (0, folded.watermark)
    # New usage still folds (under the lock) as before.
    more = [Use(1, SONNET, at("2026-04-02T09:05:00"), input=5)]
    await record(more)
    assert (await fold_usage(PRICES)).events == 1
    await assert_folded(uses + more)
