"""The task list's totals (task_count, kept by migration 0008's triggers) and its keyset pages."""

from __future__ import annotations

import asyncio
import random

import pytest

from orc.tasks.vocabulary import STATUSES, WEIGHTS
from tests.api_client import Api, assert_error

GROUP_BY = "SELECT status, weight, COUNT(*) AS n FROM task GROUP BY status, weight"
COUNTS = "SELECT status, weight, tasks AS n FROM task_count WHERE tasks <> 0"


def _listed(api: Api, **filters: str) -> tuple[int, list[str]]:
    """The total the list reports and the ids it lists, every page followed by next_before."""
    params: dict[str, object] = {"limit": 7, **filters}
    body = api.ok(api.http.get("/api/tasks", params=params))
    total, ids = body["total"], [t["id"] for t in body["items"]]
    while body["next_before"] is not None:
        body = api.ok(api.http.get("/api/tasks", params={**params, "before": body["next_before"]}))
        assert body["total"] == total and "page" not in body
        ids += [t["id"] for t in body["items"]]
    return total, ids


def _assert_totals_match_the_tasks(api: Api) -> None:
    _, every = _listed(api)
    tasks = {task_id: api.task(task_id) for task_id in every}
    for status in (None, *STATUSES):
        for weight in (None, *WEIGHTS):
            filters = {k: v for k, v in (("status", status), ("weight", weight)) if v}
            total, ids = _listed(api, **filters)
            expected = [
                task_id
                for task_id, task in tasks.items()
                if all(task[k] == v for k, v in filters.items())
            ]
            assert (total, ids) == (len(expected), expected), filters


def test_the_totals_follow_every_change_of_a_task(api: Api):
    ids = [api.create(f"t{i}", weight=WEIGHTS[i % 4])["id"] for i in range(12)]
    _assert_totals_match_the_tasks(api)
    api.start(ids[0])
    api.start(ids[1])
    api.ok(api.act(ids[2], "run"), 202)
    api.ok(api.patch(ids[3], status="planned"))
    api.ok(api.patch(ids[4], weight="large"))
    api.ok(api.patch(ids[5], title="only the title"))
    api.ok(api.act(ids[1], "complete"))
    assert api.http.delete(f"/api/tasks/{ids[6]}").status_code == 204
    assert api.http.delete(f"/api/tasks/{ids[0]}").status_code == 204
    _assert_totals_match_the_tasks(api)
    assert _listed(api)[0] == 10
    assert _listed(api, status="running")[0] == 0
    assert _listed(api, status="completed")[0] == 1


def test_next_before_pages_through_every_task_once_and_bad_cursors_are_400(api: Api):
    for i in range(27):
        api.create(f"t{i}", weight=WEIGHTS[i % 4])
    total, ids = _listed(api)
    assert (total, ids) == (27, [f"TASK-{n:03d}" for n in range(27, 0, -1)])
    first = api.ok(api.http.get("/api/tasks", params={"limit": 10}))
    assert first["next_before"] == "TASK-018" and first["page"] == 1
    last = api.ok(api.http.get("/api/tasks", params={"limit": 10, "before": "TASK-008"}))
    assert [t["id"] for t in last["items"]] == [f"TASK-{n:03d}" for n in range(7, 0, -1)]
    assert last["next_before"] is None
    # A page that ends exactly at the oldest task says there is no next one.
    exact = api.ok(api.http.get("/api/tasks", params={"limit": 7, "before": "TASK-008"}))
    assert len(exact["items"]) == 7 and exact["next_before"] is None
    # The cursor of a deleted task still works: it is a position, not a row.
    assert api.http.delete("/api/tasks/TASK-018").status_code == 204
    after = api.ok(api.http.get("/api/tasks", params={"limit": 3, "before": "TASK-018"}))
    assert [t["id"] for t in after["items"]] == ["TASK-017", "TASK-016", "TASK-015"]
    _, small = _listed(api, weight="small")
    assert small == [f"TASK-{n:03d}" for n in range(26, 0, -1) if (n - 1) % 4 == 1 and n != 18]
    for params in ({"before": "18"}, {"before": "TASK-x"}, {"before": "TASK-1", "page": 2}):
        assert_error(api.http.get("/api/tasks", params=params), 400, "bad_query")


async def _rows(conn: object, sql: str) -> set[tuple[str, str, int]]:
    from orc.db.sql import fetch

    return {(r["status"], r["weight"], int(r["n"])) for r in await fetch(conn, sql)}  # type: ignore[arg-type]


INSERT_TASK = (
    "INSERT INTO task (title, description, weight, status, created_by, created_at, updated_at) "
    "VALUES ('raw', '', ?, ?, '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
)


async def test_migration_0008_counts_the_tasks_that_exist_and_writes_by_sql_are_counted(
    database_url: str,
):
    from tortoise.migrations.executor import MigrationTarget

    from orc.db import close_database, default_connection, open_database
    from orc.db.schema import _executor, known_migrations
    from orc.db.sql import fetch

    before = known_migrations()[known_migrations().index("0008_task_count") - 1]
    await open_database(database_url)
    try:
        await _executor(database_url).migrate(targets=[MigrationTarget("orc", before)])
        conn = default_connection()
        for i in range(30):
            await fetch(conn, INSERT_TASK, [WEIGHTS[i % 4], STATUSES[i % 3]])
        await _executor(database_url).migrate()
        assert await _rows(conn, COUNTS) == await _rows(conn, GROUP_BY)
        # Anything that writes the table is counted: several rows in one statement too.
        await fetch(conn, "UPDATE task SET status = 'failed' WHERE number % 4 = 0")
        await fetch(conn, "UPDATE task SET title = 'renamed' WHERE number < 10")
        await fetch(conn, "DELETE FROM task WHERE number % 5 = 0")
        await fetch(conn, INSERT_TASK, ["large", "running"])
        assert await _rows(conn, COUNTS) == await _rows(conn, GROUP_BY)
        assert sum(n for _, _, n in await _rows(conn, COUNTS)) == 30 - 6 + 1
    finally:
        await close_database()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_concurrent_writers_on_postgresql_keep_the_counts_exact(
    database_url: str, migrated: None
):
    """Replicas write tasks at once, each on its own connection, outside orc's change lock:
    the triggers' upserts serialise on the count rows, in one order, without a deadlock.
    (A transaction of several statements may still lock count rows in two orders; orc's own
    changes run one at a time under its change lock, across replicas.)"""
    import asyncpg

    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(
            "INSERT INTO task (title, description, weight, status, created_by, created_at, "
            "updated_at) SELECT 'seed', '', 'small', 'created', '', now(), now() "
            "FROM generate_series(1, 200)"
        )

        async def writer(seed: int) -> None:
            rng = random.Random(seed)
            conn = await asyncpg.connect(database_url)
            try:
                for _ in range(60):
                    number = rng.randint(1, 200)
                    await conn.execute(
                        "UPDATE task SET status = $1, weight = $2 WHERE number = $3",
                        rng.choice(STATUSES),
                        rng.choice(WEIGHTS),
                        number,
                    )
                    # Many tasks in one statement: several count rows, locked in one order.
                    # (Each writer its own tasks here: two UPDATEs of the same rows can
                    # deadlock on the task rows themselves, triggers or not.)
                    await conn.execute(
                        "UPDATE task SET status = $1 WHERE number % 6 = $2",
                        rng.choice(STATUSES),
                        seed,
                    )
                    if rng.random() < 0.1:
                        await conn.execute(
                            "INSERT INTO task (title, description, weight, status, created_by, "
                            "created_at, updated_at) VALUES ('new', '', $1, 'created', '', now(), "
                            "now())",
                            rng.choice(WEIGHTS),
                        )
                    if rng.random() < 0.05:
                        await conn.execute("DELETE FROM task WHERE number = $1", number)
            finally:
                await conn.close()

        await asyncio.gather(*(writer(seed) for seed in range(6)))
        counted = {
            (r["status"], r["weight"], r["n"])
            for r in await admin.fetch(COUNTS.replace("tasks AS n", "tasks::int AS n"))
        }
        grouped = {
            (r["status"], r["weight"], r["n"])
            for r in await admin.fetch(GROUP_BY.replace("COUNT(*)", "COUNT(*)::int"))
        }
        assert counted == grouped
    finally:
        await admin.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_deep_page_on_sqlite_skips_along_an_index_of_numbers_not_the_tasks(store: str):
    """``page=N`` skips the newer tasks by OFFSET. On SQLite the number is the rowid: without
    migration 0011's narrow index the skip walked the table's rows (3 to 6 ms at 50,000 tasks
    against 0.3 ms along the index)."""
    from orc.db import default_connection
    from orc.db.models import Task
    from orc.db.sql import fetch

    numbers = Task.filter().order_by("-number").offset(500).limit(51).values_list("number")
    sql = numbers.sql(params_inline=True)
    plan = await fetch(default_connection(), f"EXPLAIN QUERY PLAN {sql}")
    assert [row["detail"] for row in plan] == ["SCAN task USING COVERING INDEX task_number_narrow"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_cost_summary_reads_the_tails_tasks_by_key_not_every_task_of_the_month(
    store: str,
):
    """The cost summary looks up the stored cost of each task with unfolded usage. SQLite
    walked every task of the month for it (a covering index on cost): 910 page reads per summary
    at 71,000 tasks, growing with the month, on a 30-minute soak."""
    from datetime import UTC, datetime

    from orc.db import default_connection
    from orc.db.sql import fetch
    from orc.usage.task_months import stored_costs_sql

    month = datetime(2026, 12, 1, tzinfo=UTC)
    plan = await fetch(
        default_connection(), f"EXPLAIN QUERY PLAN {stored_costs_sql(3)}", [month, 1, 2, 3]
    )
    details = [row["detail"] for row in plan]
    assert len(details) == 1 and "(month=? AND task_number=?)" in details[0], details
