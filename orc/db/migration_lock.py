"""A lock held while migrating, so two servers starting together never migrate at once."""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from orc.db.private_file import make_private
from orc.db.url import DatabaseUrl

# Any constant works; it only has to be the same in every orc process.
PG_MIGRATION_LOCK_KEY = 0x6F7263_01


@asynccontextmanager
async def migration_lock(database: DatabaseUrl) -> AsyncIterator[None]:
    """Hold an exclusive lock for this database (flock for SQLite, advisory lock for PostgreSQL)."""
    if database.is_sqlite:
        lock_path = Path(f"{database.sqlite_path}.migrate.lock")
        make_private(lock_path)  # everything orc keeps beside the database is owner-only
        with lock_path.open("a") as handle:
            await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return
    import asyncpg  # PostgreSQL only: an API on SQLite need not load it (~3 MiB)

    conn = await asyncpg.connect(**database.asyncpg_connect_args())
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", PG_MIGRATION_LOCK_KEY)
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", PG_MIGRATION_LOCK_KEY)
    finally:
        await conn.close()
