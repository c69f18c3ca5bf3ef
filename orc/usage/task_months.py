"""Tokens and cost per month and task (``usage_task_month``), for the month's top tasks.

The cost summary's top ten would otherwise add up the rollups of every task of the month on
every request, which grows with the data. The aggregation job keeps this table in the same
transaction as the rollups (so it holds exactly the events up to the watermark), with the cost
at the prices of its price list; ``server_state`` holds that list's fingerprint. A reader with
other prices (a changed pricing.yaml that only one process has loaded) must not use the table;
the next fold with the new prices rebuilds it from the rollups.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from orc.db.sql import as_datetime, fetch, read_state, time_bucket, write_state
from orc.usage.pricing import TOKEN_TYPES, PriceList

PRICES_KEY = "usage_task_month_prices"
# Costs closer than this are settled by the report's own figures (a token at the cheapest
# price costs about 1e-8 USD; float sums of a month's events err by far less).
NEAR_TIE_USD = 1e-9
_TOKENS = " + ".join(f"{kind}_tokens" for kind in TOKEN_TYPES)


@dataclass(frozen=True)
class TaskMonth:
    """One task's tokens and cost in one month."""

    task_number: int
    tokens: int
    cost_usd: float


def prices_fingerprint(prices: PriceList) -> str:
    """A short hash of every model's prices: equal for equal price lists, in any process."""
    table = {
        model: [getattr(p, kind) for kind in TOKEN_TYPES] for model, p in prices.prices.items()
    }
    return hashlib.sha256(json.dumps(table, sort_keys=True).encode()).hexdigest()[:32]


def _cost_sql(models: Sequence[str], prices: PriceList) -> tuple[str, list[Any]]:
    """SQL (and its parameters) for the cost of a row's tokens of its ``model`` column.

    The same rule as PriceList.cost: a priced model's tokens at its prices (prefix matching
    done here, in Python), an unpriced one's reported cost.
    """
    whens, args = [], []
    for model in models:
        price = prices.price_for(model)
        if price is None:
            continue
        terms = " + ".join(f"{kind}_tokens * CAST(? AS DOUBLE PRECISION)" for kind in TOKEN_TYPES)
        whens.append(f"WHEN ? THEN ({terms}) / 1000000.0")
        args += [model, *(getattr(price, kind) for kind in TOKEN_TYPES)]
    if not whens:
        return "reported_cost_usd", []
    return f"(CASE model {' '.join(whens)} ELSE reported_cost_usd END)", args


async def _upsert(
    conn: BaseDBAsyncClient,
    source: str,
    time_column: str,
    where: str,
    args: list[Any],
    prices: PriceList,
) -> None:
    models = [row["model"] for row in await fetch(conn, "SELECT model FROM usage_total")]
    cost, cost_args = _cost_sql(models, prices)
    month = time_bucket(conn, "month", time_column)
    await fetch(
        conn,
        "INSERT INTO usage_task_month (month, task_number, tokens, cost_usd) "  # noqa: S608
        f"SELECT {month} AS bucket, task_number, SUM({_TOKENS}), SUM({cost}) FROM {source}"
        f"{where} GROUP BY bucket, task_number "
        "ON CONFLICT (month, task_number) DO UPDATE SET "
        "tokens = usage_task_month.tokens + excluded.tokens, "
        "cost_usd = usage_task_month.cost_usd + excluded.cost_usd",
        [*cost_args, *args],
    )


async def fold_task_months(conn: BaseDBAsyncClient, low: int, high: int, prices: PriceList) -> None:
    """Add the events ``low < id <= high`` (in the fold's transaction, after usage_total)."""
    await _upsert(
        conn, "usage_event", "occurred_at", " WHERE id > ? AND id <= ?", [low, high], prices
    )


async def ensure_priced(conn: BaseDBAsyncClient, prices: PriceList) -> None:
    """Rebuild the table from the rollups when it was kept at other prices (or never)."""
    fingerprint = prices_fingerprint(prices)
    if await stored_fingerprint(conn) == fingerprint:
        return
    await fetch(conn, "DELETE FROM usage_task_month")
    await _upsert(conn, "usage_rollup", "hour", "", [], prices)
    await write_state(conn, PRICES_KEY, fingerprint)


async def stored_fingerprint(conn: BaseDBAsyncClient) -> str | None:
    return await read_state(conn, PRICES_KEY)


async def candidate_tasks(conn: BaseDBAsyncClient, month: datetime, limit: int) -> list[int] | None:
    """Tasks among which the ``limit`` costliest of ``month`` are, read along the (month,
    cost, task) index: the ``limit`` costliest by the stored cost, and every task that costs
    about as much as the last of them (the stored cost is a sum in another order than the
    report's, so near-ties are settled by the report's exact figures; among equal costs the
    lowest numbers count).

    None when the table cannot answer alone: usage dated after this month exists (the
    summary counts it in this month's figures).
    """
    # MAX, not "WHERE month > ? LIMIT 1": PostgreSQL's generic plan of that prepared statement
    # (chosen after five runs: its LIMIT 1 looks cheap) scanned all of the table's rows when
    # none is later (27 ms at 100,000 tasks); MAX reads the last entry of the month index.
    latest = await fetch(conn, "SELECT MAX(month) AS m FROM usage_task_month")
    if latest[0]["m"] is not None and as_datetime(latest[0]["m"]) > month:
        return None
    head = "SELECT task_number, cost_usd FROM usage_task_month WHERE month = ?"
    rows = await fetch(conn, f"{head} ORDER BY cost_usd DESC LIMIT ?", [month, limit])
    if len(rows) == limit:
        last = float(rows[-1]["cost_usd"])
        rows += await fetch(
            conn,
            f"{head} AND cost_usd >= ? AND cost_usd <= ? ORDER BY task_number LIMIT ?",
            [month, last - NEAR_TIE_USD, last + NEAR_TIE_USD, limit],
        )
    return sorted({int(r["task_number"]) for r in rows})


async def stored_costs(
    conn: BaseDBAsyncClient, month: datetime, numbers: list[int]
) -> dict[int, float]:
    """The stored cost of each of these tasks in ``month`` (absent: none folded)."""
    if not numbers:
        return {}
    rows = await fetch(conn, stored_costs_sql(len(numbers)), [month, *numbers])
    return {int(r["task_number"]): float(r["cost_usd"]) for r in rows}


def stored_costs_sql(count: int) -> str:
    """``stored_costs``'s query for ``count`` tasks: each looked up by its (month, task_number) key.

    ``tokens`` is read only to keep SQLite off the (month, cost_usd, task_number) index: that
    index covers the other two columns, and SQLite (without statistics) then preferred walking
    every task of the month along it to looking up a few by key. On a 30-minute soak that was
    910 page reads per cost summary at 71,000 tasks, and the API's CPU per request grew with it.
    """
    marks = ", ".join("?" for _ in range(count))
    return (
        "SELECT task_number, cost_usd, tokens FROM usage_task_month "  # noqa: S608
        f"WHERE month = ? AND task_number IN ({marks})"
    )
