"""Database access: open and close Tortoise, describe its errors without secrets (migrations are
in ``schema``, raw SQL helpers in ``sql``, the URL in ``url``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tortoise import Tortoise, connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.backends.base.executor import EXECUTOR_CACHE

from orc.db.url import is_sqlite_url, sqlite_path, tortoise_config

PING_TIMEOUT_SECONDS = 2.0


def prepare_sqlite_file(database_url: str) -> None:
    """Create the directory of an SQLite database (owner-only), so first start needs no setup."""
    if not is_sqlite_url(database_url):
        return
    Path(sqlite_path(database_url)).parent.mkdir(mode=0o700, parents=True, exist_ok=True)


async def open_database(database_url: str) -> None:
    """Initialise Tortoise for this process; connections open lazily on first use."""
    prepare_sqlite_file(database_url)
    # Tortoise caches INSERT statements by connection name, not by dialect: a process that
    # opens another database (tests, tools) must not reuse SQLite's `?` on PostgreSQL.
    EXECUTOR_CACHE.clear()
    await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)


async def close_database() -> None:
    """Close every connection this process opened."""
    await Tortoise.close_connections()


def default_connection() -> BaseDBAsyncClient:
    """The connection every model uses."""
    return connections.get("default")


def describe_error(exc: BaseException) -> str:
    """A short, secret-free description of a database error for users and probes."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
