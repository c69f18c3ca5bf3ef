"""One backup or restore at a time: an flock in the backup directory, and on PostgreSQL also an
advisory lock, so servers that share the database (but not a disk) never back up together."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from orc.backup.manifest import BackupError
from orc.db.private_file import make_private
from orc.db.url import DatabaseUrl

LOCK_FILE = ".backup.lock"
# Any constant works; it only has to be the same in every orc process (0x6f7263 = "orc").
PG_BACKUP_LOCK_KEY = 0x6F7263_05
# The lock's own session is named, so "is the database in use?" can leave it out.
LOCK_APPLICATION_NAME = "orc backup lock"


class BackupBusy(BackupError):
    """Another backup or restore holds the lock."""

    status = 409
    code = "backup_busy"


@contextlib.contextmanager
def _file_lock(backup_dir: Path) -> Iterator[None]:
    backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = backup_dir / LOCK_FILE
    make_private(path)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise BackupBusy(
                f"another backup or restore is running ({holder}); try again when it finishes"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.asynccontextmanager
async def _pg_lock(database_url: DatabaseUrl | str) -> AsyncIterator[None]:
    # The lock's session stays open, and holds the advisory lock, for as long as the block runs.
    import asyncpg  # PostgreSQL only: on SQLite the processes need not load it (~3 MiB)

    try:
        conn = await asyncpg.connect(
            **DatabaseUrl.of(database_url).asyncpg_connect_args(),
            server_settings={"application_name": LOCK_APPLICATION_NAME},
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise BackupError(f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}") from None
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", PG_BACKUP_LOCK_KEY):
            raise BackupBusy(
                "another orc server is taking a backup of this database; try again when it finishes"
            )
        yield
    finally:
        # Closing the session releases the advisory lock.
        await conn.close()


@contextlib.asynccontextmanager
async def backup_lock(backup_dir: Path, database_url: DatabaseUrl | str) -> AsyncIterator[None]:
    """Hold the backup lock or raise BackupBusy at once (never wait behind a long backup)."""
    with _file_lock(backup_dir):
        if DatabaseUrl.of(database_url).is_sqlite:
            yield
        else:
            async with _pg_lock(database_url):
                yield
