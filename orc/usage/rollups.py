"""Fold new usage events into hourly rollups, daily and all-time totals, per-month task figures.

Each fold reads the watermark (the last folded event id), folds the events above it up to the
newest committed one and moves the watermark, all in one transaction: a crash leaves nothing
half-done, a rerun continues exactly where the last commit stopped, and the work is
proportional to the new events only. Usage ids commit in id order (see orc.outbox.events), so no
event can appear below the watermark later.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tortoise.backends.base.client import BaseDBAsyncClient

from orc.db import default_connection
from orc.db.sql import fetch, locked_transaction, read_state, time_bucket, write_state
from orc.usage.pricing import PriceList
from orc.usage.task_months import (
    PRICES_KEY,
    ensure_priced,
    fold_task_months,
    prices_fingerprint,
)

WATERMARK_KEY = "usage_rollup_watermark"
DAYS_KEY = "usage_day_filled"
TASK_MODELS_KEY = "usage_task_month_model_filled"
FOLD_LOCK_KEY = 0x6F7263_03
# Events folded per transaction, by the worker's fold loop and by `orc fold-usage` alike (which may
# run beside a live server). On SQLite a fold holds the database's one write lock: a minute of
# a busy server's usage (15,000 events) in one transaction held it for 150-220 ms, growing with
# the tables, and every usage report and task change waited behind it. In chunks of 2,000 each
# hold is about 30 ms and writers get in between (bench/README.md).
CHUNK_EVENTS = 2_000
_SUMS = (
    "COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), "
    "SUM(cache_write_tokens), SUM(reported_cost_usd)"
)
_ADD = ", ".join(
    f"{c} = {{table}}.{c} + excluded.{c}"
    for c in (
        "events",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reported_cost_usd",
    )
)
_COLUMNS = (
    "events, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reported_cost_usd"
)


# The unfolded tail: the events above the watermark, as a closed range. Planned without
# statistics (PostgreSQL before its first ANALYZE, or a cluster running with autovacuum off),
# "id > ?" alone is guessed to match a third of usage_event and read by a sequential scan of the
# whole table; a closed range is guessed small and read along the primary key, which it is (the
# tail is at most a few minutes of usage). With statistics both plan the same.
TAIL_IDS = "id > ? AND id <= 9223372036854775807"


@dataclass(frozen=True)
class FoldResult:
    events: int
    watermark: int


async def read_watermark(conn: BaseDBAsyncClient) -> int:
    return int(await read_state(conn, WATERMARK_KEY) or 0)


@dataclass(frozen=True)
class FoldState:
    """Where the unfolded tail starts, and whether the tables that came after the rollups hold
    every folded event yet (once a fold has run since their migration: 0007, 0009)."""

    watermark: int
    days_ready: bool
    task_models_ready: bool
    # The fingerprint of the prices the task months are kept at (orc.usage.task_months).
    prices: str | None


async def read_fold_state(conn: BaseDBAsyncClient) -> FoldState:
    """The fold's state in one query: every cost report and page of the task list asks."""
    keys = [WATERMARK_KEY, DAYS_KEY, TASK_MODELS_KEY, PRICES_KEY]
    rows = await fetch(conn, "SELECT key, value FROM server_state WHERE key IN (?, ?, ?, ?)", keys)
    found = {row["key"]: row["value"] for row in rows}
    return FoldState(
        int(found.get(WATERMARK_KEY) or 0),
        DAYS_KEY in found,
        TASK_MODELS_KEY in found,
        found.get(PRICES_KEY),
    )


async def _fold_into(
    conn: BaseDBAsyncClient, table: str, keys: dict[str, str], low: int, high: int
) -> None:
    """Add the events ``low < id <= high`` to ``table``, grouped by ``keys`` (column: SQL)."""
    columns = ", ".join(keys)
    selected = ", ".join(f"{sql} AS k_{column}" for column, sql in keys.items())
    await fetch(
        conn,
        f"INSERT INTO {table} ({columns}, {_COLUMNS}) "  # noqa: S608
        f"SELECT {selected}, {_SUMS} FROM usage_event WHERE id > ? AND id <= ? "
        f"GROUP BY {', '.join(f'k_{column}' for column in keys)} "
        f"ON CONFLICT ({columns}) DO UPDATE SET {_ADD.format(table=table)}",
        [low, high],
    )


async def _fold_range(conn: BaseDBAsyncClient, low: int, high: int, prices: PriceList) -> None:
    hour = time_bucket(conn, "hour", "occurred_at")
    day = time_bucket(conn, "day", "occurred_at")
    by_model = {"model": "model"}
    await _fold_into(
        conn, "usage_rollup", {"hour": hour, **by_model, "task_number": "task_number"}, low, high
    )
    await _fold_into(conn, "usage_total", by_model, low, high)
    await _fold_into(conn, "usage_day", {"day": day, **by_model}, low, high)
    month = time_bucket(conn, "month", "occurred_at")
    await _fold_into(
        conn,
        "usage_task_month_model",
        {"month": month, "task_number": "task_number", **by_model},
        low,
        high,
    )
    await fold_task_months(conn, low, high, prices)


async def _ensure_filled(
    conn: BaseDBAsyncClient, state_key: str, table: str, keys: dict[str, str]
) -> None:
    """Fill a table that came after the rollups from them, once, in the first fold after."""
    if await read_state(conn, state_key) is not None:
        return
    columns = ", ".join(keys)
    selected = ", ".join(f"{sql} AS k_{column}" for column, sql in keys.items())
    sums = ", ".join(f"SUM({c})" for c in _COLUMNS.split(", "))
    await fetch(conn, f"DELETE FROM {table}")  # noqa: S608
    await fetch(
        conn,
        f"INSERT INTO {table} ({columns}, {_COLUMNS}) "  # noqa: S608
        f"SELECT {selected}, {sums} FROM usage_rollup "
        f"GROUP BY {', '.join(f'k_{column}' for column in keys)}",
    )
    await write_state(conn, state_key, "1")


async def _fold_once(limit: int, prices: PriceList) -> tuple[int, int, bool]:
    """Fold up to ``limit`` ids above the watermark; return (events, watermark, caught up)."""
    async with locked_transaction(FOLD_LOCK_KEY) as conn:
        await ensure_priced(conn, prices)
        await _ensure_filled(
            conn, DAYS_KEY, "usage_day", {"day": time_bucket(conn, "day", "hour"), "model": "model"}
        )
        await _ensure_filled(
            conn,
            TASK_MODELS_KEY,
            "usage_task_month_model",
            {
                "month": time_bucket(conn, "month", "hour"),
                "task_number": "task_number",
                "model": "model",
            },
        )
        low = await read_watermark(conn)
        rows = await fetch(
            conn,
            "SELECT MAX(id) AS high, COUNT(*) AS n FROM "
            "(SELECT id FROM usage_event WHERE id > ? ORDER BY id LIMIT ?) AS new_events",
            [low, limit],
        )
        high, count = rows[0]["high"], int(rows[0]["n"])
        if not count:
            return 0, low, True
        await _fold_range(conn, low, high, prices)
        await write_state(conn, WATERMARK_KEY, str(high))
    return count, int(high), count < limit


async def _idle_state(prices: PriceList) -> int | None:
    """The watermark when a fold would change nothing (no event above it, the later tables
    filled, the task months kept at ``prices``), else None.

    Read without the fold lock, which on SQLite is the database's one write lock: the worker
    folds every 5 s, and an idle server's fold then takes no lock at all. A stale answer is
    harmless: events commit in id order, so one that is not visible yet is folded next time,
    and whatever else would change is re-read under the lock by the fold that follows.
    """
    conn = default_connection()
    state = await read_fold_state(conn)
    if not (state.days_ready and state.task_models_ready):
        return None
    if state.prices != prices_fingerprint(prices):
        return None
    # MAX(id): the last entry of the primary key, on both databases.
    newest = await fetch(conn, "SELECT MAX(id) AS high FROM usage_event")
    high = newest[0]["high"]
    return state.watermark if high is None or int(high) <= state.watermark else None


async def fold_usage(
    prices: PriceList, chunk: int = CHUNK_EVENTS, stopping: asyncio.Event | None = None
) -> FoldResult:
    """Fold every new usage event, ``chunk`` events per transaction.

    ``prices``: what the per-month task costs are kept at (orc.usage.task_months).
    ``stopping``: once set, return after the chunk in progress (a worker that stops does not
    wait for a backlog of millions of events; the next fold continues from the watermark).
    """
    idle = await _idle_state(prices)
    if idle is not None:
        return FoldResult(0, idle)
    total = 0
    while True:
        count, watermark, caught_up = await _fold_once(chunk, prices)
        total += count
        if caught_up or (stopping is not None and stopping.is_set()):
            return FoldResult(total, watermark)
