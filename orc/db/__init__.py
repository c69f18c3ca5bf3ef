"""Database access: open and close Tortoise, describe its errors without secrets (migrations are
in ``schema``, raw SQL helpers in ``sql``, the URL in ``url``).

Tortoise is imported where it is used: ``orc.config`` imports ``orc.db.url``, and commands
and the long-lived ``orc serve`` launcher that never touch the database must not load the ORM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orc.db.private_file import make_sqlite_private
from orc.db.url import DatabaseUrl

if TYPE_CHECKING:
    from tortoise.backends.base.client import BaseDBAsyncClient

PING_TIMEOUT_SECONDS = 2.0


def prepare_sqlite_file(database: DatabaseUrl) -> None:
    """Create the directory of an SQLite database (owner-only), so first start needs no setup,
    and the database file itself with mode 0600, whatever the directory's mode."""
    if database.is_sqlite:
        database.sqlite_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        make_sqlite_private(database.sqlite_path)


async def open_database(database: DatabaseUrl | str) -> None:
    """Initialise Tortoise for this process; connections open lazily on first use."""
    from tortoise import Tortoise
    from tortoise.backends.base.executor import EXECUTOR_CACHE

    database = DatabaseUrl.of(database)
    prepare_sqlite_file(database)
    # Tortoise caches INSERT statements by connection name, not by dialect: a process that
    # opens another database (tests, tools) must not reuse SQLite's `?` on PostgreSQL.
    EXECUTOR_CACHE.clear()
    await Tortoise.init(config=database.tortoise_config(), _enable_global_fallback=True)


async def close_database() -> None:
    """Close every connection this process opened."""
    from tortoise import Tortoise

    await Tortoise.close_connections()


def default_connection() -> BaseDBAsyncClient:
    """The connection every model uses."""
    from tortoise import connections

    return connections.get("default")


def describe_error(exc: BaseException) -> str:
    """A short, secret-free description of a database error for users and probes."""
    if isinstance(exc, TimeoutError):  # asyncio.TimeoutError is TimeoutError since 3.11
        return "timed out"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
