"""Small helpers for the few queries written in SQL (aggregation, upserts), on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction


def is_postgres(conn: BaseDBAsyncClient) -> bool:
    return conn.capabilities.dialect == "postgres"


def placeholders(conn: BaseDBAsyncClient, sql: str) -> str:
    """Write queries with ``?``; PostgreSQL (asyncpg) wants ``$1, $2, …``."""
    if not is_postgres(conn):
        return sql
    parts = sql.split("?")
    return "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], 1)) + parts[-1]


def as_datetime(value: Any) -> datetime:
    """A timestamp column's value as an aware datetime (SQLite gives text, naive means UTC)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def fetch(conn: BaseDBAsyncClient, sql: str, values: Sequence[Any] = ()) -> list[Any]:
    _, rows = await conn.execute_query(placeholders(conn, sql), list(values))
    return list(rows)


async def read_state(conn: BaseDBAsyncClient, key: str) -> str | None:
    """The value of a server_state key, or None."""
    rows = await fetch(conn, "SELECT value FROM server_state WHERE key = ?", [key])
    return str(rows[0]["value"]) if rows else None


async def write_state(conn: BaseDBAsyncClient, key: str, value: str) -> None:
    """Set a server_state key (in the caller's transaction)."""
    await fetch(
        conn,
        "INSERT INTO server_state (key, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
        "updated_at = excluded.updated_at",
        [key, value, datetime.now(UTC)],
    )


_BUCKET_FORMATS = {
    "hour": "%Y-%m-%d %H:00:00+00:00",
    "day": "%Y-%m-%d 00:00:00+00:00",
    "month": "%Y-%m-01 00:00:00+00:00",
}


def time_bucket(conn: BaseDBAsyncClient, unit: str, column: str) -> str:
    """SQL for the UTC hour, day or month a timestamp column falls in, in the column's format."""
    if is_postgres(conn):
        return f"(date_trunc('{unit}', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"
    return f"strftime('{_BUCKET_FORMATS[unit]}', {column})"


@asynccontextmanager
async def locked_transaction(lock_key: int) -> AsyncIterator[BaseDBAsyncClient]:
    """A write transaction that holds ``lock_key`` (PostgreSQL) or SQLite's write lock."""
    async with in_transaction() as conn:
        if is_postgres(conn):
            await conn.execute_query("SELECT pg_advisory_xact_lock($1)", [lock_key])
        else:
            # Take the write lock now (waiting up to busy_timeout), not at the first write,
            # so nothing this transaction reads can go stale before it writes.
            await conn.execute_query("UPDATE server_state SET value = value WHERE 1 = 0")
        yield conn


@asynccontextmanager
async def snapshot_transaction() -> AsyncIterator[BaseDBAsyncClient]:
    """A read-only view in which several queries see one consistent state."""
    async with in_transaction() as conn:
        if is_postgres(conn):
            await conn.execute_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield conn
