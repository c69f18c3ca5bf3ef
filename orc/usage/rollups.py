"""Fold new usage events into hourly rollups, all-time totals and per-month task costs.

Each fold reads the watermark (the last folded event id), folds the events above it up to the
newest committed one and moves the watermark, all in one transaction: a crash leaves nothing
half-done, a rerun continues exactly where the last commit stopped, and the work is
proportional to the new events only. Usage ids commit in id order (see orc.outbox.events), so no
event can appear below the watermark later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from orc.db.sql import fetch, hour_bucket, locked_transaction
from orc.usage.pricing import PriceList
from orc.usage.task_months import ensure_priced, fold_task_months

WATERMARK_KEY = "usage_rollup_watermark"
FOLD_LOCK_KEY = 0x6F7263_03
CHUNK_EVENTS = 200_000
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


@dataclass(frozen=True)
class FoldResult:
    events: int
    watermark: int


async def read_watermark(conn: BaseDBAsyncClient) -> int:
    rows = await fetch(conn, "SELECT value FROM server_state WHERE key = ?", [WATERMARK_KEY])
    return int(rows[0]["value"]) if rows else 0


async def _fold_range(conn: BaseDBAsyncClient, low: int, high: int, prices: PriceList) -> None:
    hour = hour_bucket(conn, "occurred_at")
    await fetch(
        conn,
        f"INSERT INTO usage_rollup (hour, model, task_number, {_COLUMNS}) "  # noqa: S608
        f"SELECT {hour} AS bucket, model, task_number, {_SUMS} FROM usage_event "
        "WHERE id > ? AND id <= ? GROUP BY bucket, model, task_number "
        f"ON CONFLICT (hour, model, task_number) DO UPDATE SET {_ADD.format(table='usage_rollup')}",
        [low, high],
    )
    await fetch(
        conn,
        f"INSERT INTO usage_total (model, {_COLUMNS}) "  # noqa: S608
        f"SELECT model, {_SUMS} FROM usage_event WHERE id > ? AND id <= ? GROUP BY model "
        f"ON CONFLICT (model) DO UPDATE SET {_ADD.format(table='usage_total')}",
        [low, high],
    )
    await fold_task_months(conn, low, high, prices)


async def _fold_once(limit: int, prices: PriceList) -> tuple[int, int, bool]:
    """Fold up to ``limit`` ids above the watermark; return (events, watermark, caught up)."""
    async with locked_transaction(FOLD_LOCK_KEY) as conn:
        await ensure_priced(conn, prices)
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
        await fetch(
            conn,
            "INSERT INTO server_state (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            [WATERMARK_KEY, str(high), datetime.now(UTC)],
        )
    return count, int(high), count < limit


async def fold_usage(prices: PriceList, chunk: int = CHUNK_EVENTS) -> FoldResult:
    """Fold every new usage event, ``chunk`` events per transaction.

    ``prices``: what the per-month task costs are kept at (orc.usage.task_months).
    """
    total = 0
    while True:
        count, watermark, caught_up = await _fold_once(chunk, prices)
        total += count
        if caught_up:
            return FoldResult(total, watermark)
