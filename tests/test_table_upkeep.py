"""orc's PostgreSQL tables keep their statistics where autovacuum leaves them alone.

A cluster with ``autovacuum = off`` (this machine's is) or a table with
``autovacuum_enabled = false`` never gets statistics, and the planner's guesses then read whole
tables for queries that need a few rows. The job worker's upkeep does what autovacuum would.
In process, on a real PostgreSQL; the table option makes the test mean the same on a cluster
whose autovacuum is on.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from orc.db import default_connection
from orc.db.maintenance import keep_tables_planned
from orc.db.sql import fetch

pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)

EVENTS = 50_000
TASKS = 5_000
# What the task list asks for a page of tasks (orc.usage.recording.usage_by_task).
PAGE_USAGE = (
    "SELECT task_number, model, SUM(input_tokens) FROM usage_event "
    "WHERE task_number IN ({}) GROUP BY task_number, model".format(
        ", ".join(str(n) for n in range(2_000, 2_050))
    )
)


async def scans_of_usage_event(sql: str) -> list[str]:
    rows = await fetch(default_connection(), f"EXPLAIN (FORMAT JSON) {sql}")

    def walk(plan: dict[str, Any]) -> list[str]:
        found = [plan["Node Type"]] if plan.get("Relation Name") == "usage_event" else []
        return found + [kind for child in plan.get("Plans", []) for kind in walk(child)]

    return walk(json.loads(rows[0]["QUERY PLAN"])[0]["Plan"])


async def wait_for_counters(table: str, changed: int) -> None:
    """PostgreSQL publishes a session's table counters within a second or so of its commit."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = await fetch(
            default_connection(),
            "SELECT n_mod_since_analyze AS n FROM pg_stat_user_tables WHERE relname = ?",
            [table],
        )
        if rows and int(rows[0]["n"]) >= changed:
            return
        await fetch(default_connection(), "SELECT pg_stat_clear_snapshot()")
        await asyncio.sleep(0.2)
    raise AssertionError(f"{table}: the statistics counters never showed {changed} changes")


async def test_a_table_autovacuum_leaves_alone_is_analyzed_and_read_by_its_index_again(store):
    conn = default_connection()
    await conn.execute_script("ALTER TABLE usage_event SET (autovacuum_enabled = false)")
    await conn.execute_query(
        "INSERT INTO usage_event (task_number, phase, model, input_tokens, output_tokens, "
        "cache_read_tokens, cache_write_tokens, occurred_at) "
        f"SELECT i % {TASKS} + 1, 'p', 'model-' || (i % 3), i, 0, 0, 0, now() "
        "FROM generate_series(1, $1) AS i",
        [EVENTS],
    )
    await wait_for_counters("usage_event", EVENTS)
    # Without statistics, a page of 50 tasks' usage (1 % of the events) reads all of them.
    assert await scans_of_usage_event(PAGE_USAGE) == ["Seq Scan"]

    upkeep = await keep_tables_planned()
    assert upkeep is not None
    # 50,000 new rows: over autovacuum's thresholds to analyze and to vacuum (for inserts).
    assert "usage_event" in upkeep.analyzed and "usage_event" in upkeep.vacuumed
    # A table nobody changed is left alone.
    assert "project" not in upkeep.analyzed
    stats = await fetch(
        conn,
        "SELECT reltuples, (SELECT COUNT(*) FROM pg_stats WHERE tablename = 'usage_event') "
        "AS columns FROM pg_class WHERE relname = 'usage_event'",
    )
    assert stats[0]["reltuples"] == EVENTS and stats[0]["columns"] > 0
    assert "Seq Scan" not in await scans_of_usage_event(PAGE_USAGE)

    # Nothing changed since: the next round has nothing to do for it.
    again = await keep_tables_planned()
    assert again is not None and "usage_event" not in again.analyzed
