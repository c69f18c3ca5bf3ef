"""A task cancelled while its transaction starts leaves the database usable, on both databases.

orc cancels tasks on purpose (a phase past its timeout, a cancelled run, the lease watcher at a
run's end). Tortoise's transactions leaked SQLite's connection lock, or one of PostgreSQL's
pooled connections, when the cancel came while ``BEGIN`` was on its way: a run that timed out
then waited forever to record its end. The race is made certain here: ``BEGIN`` runs, then the
start stops until the test cancels it.
"""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from tortoise.transactions import in_transaction

from orc.db import DatabaseUrl, default_connection
from orc.db.sql import is_postgres, read_state, write_state

# More than the connection pool holds (max_size defaults to 5): each leak would cost one.
CANCELS = 6


def _wrapper_class() -> type:
    """The class whose ``begin`` Tortoise's transaction awaits on this backend."""
    if is_postgres(default_connection()):
        from tortoise.backends.asyncpg.client import TransactionWrapper

        return TransactionWrapper
    from tortoise.backends.sqlite.client import SqliteTransactionWrapper

    return SqliteTransactionWrapper


async def _cancel_while_beginning(monkeypatch: pytest.MonkeyPatch) -> None:
    wrapper = _wrapper_class()
    original = wrapper.begin
    begun = asyncio.Event()

    async def begin_then_stop(self: object) -> None:
        await original(self)
        begun.set()
        await asyncio.Event().wait()  # until cancelled

    monkeypatch.setattr(wrapper, "begin", begin_then_stop)
    try:

        async def write() -> None:
            async with in_transaction() as conn:
                await write_state(conn, "test.never", "written")

        writing = asyncio.create_task(write())
        await asyncio.wait_for(begun.wait(), 10)
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
    finally:
        monkeypatch.setattr(wrapper, "begin", original)


async def test_a_task_cancelled_while_its_transaction_begins_leaves_the_database_usable(
    store: str, monkeypatch: pytest.MonkeyPatch
):
    for _ in range(CANCELS):
        await _cancel_while_beginning(monkeypatch)

    # The next transactions and plain queries go through at once, and commit.
    async with asyncio.timeout(10):
        async with in_transaction() as conn:
            await write_state(conn, "test.after", "written")
        assert await read_state(default_connection(), "test.after") == "written"
        assert await read_state(default_connection(), "test.never") is None

    database = DatabaseUrl(store)
    if database.is_sqlite:
        # No transaction left open on the database: another connection writes at once.
        other = sqlite3.connect(database.sqlite_path, timeout=0.5)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("UPDATE server_state SET value = 'again' WHERE key = 'test.after'")
            other.commit()
        finally:
            other.close()
    else:
        rows = await default_connection().execute_query_dict(
            "SELECT count(*) AS n FROM pg_stat_activity "
            "WHERE datname = current_database() AND state LIKE 'idle in transaction%'"
        )
        assert rows[0]["n"] == 0
