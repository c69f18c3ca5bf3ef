"""How many tasks there are, by status and weight, read from task_count (kept by triggers).

Migration 0008's triggers change task_count in the statement that changes a task, so these
figures are exact and cost a read of a few rows however many tasks there are.
"""

from __future__ import annotations

from tortoise.backends.base.client import BaseDBAsyncClient

from orc.db.sql import fetch


async def count_tasks(
    conn: BaseDBAsyncClient, status: str | None = None, weight: str | None = None
) -> int:
    """The number of tasks with this status and this weight (None: any)."""
    where, args = [], []
    for column, value in (("status", status), ("weight", weight)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = await fetch(conn, f"SELECT SUM(tasks) AS n FROM task_count{clause}", args)  # noqa: S608
    return int(rows[0]["n"] or 0)
