"""One backup or restore at a time: an flock in the backup directory, and on PostgreSQL also an
advisory lock, so servers that share the database (but not a disk) never back up together."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from orc.backup.manifest import BackupError
from orc.db.url import asyncpg_connect_args, is_sqlite_url

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


@contextlib.contextmanager
def _pg_lock(database_url: str) -> Iterator[None]:
    # A private loop keeps the session (and its advisory lock) open while sync code runs.
    loop = asyncio.new_event_loop()
    try:
        try:
            conn = loop.run_until_complete(
                asyncpg.connect(
                    **asyncpg_connect_args(database_url),
                    server_settings={"application_name": LOCK_APPLICATION_NAME},
                )
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise BackupError(
                f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}"
            ) from None
        try:
            got = loop.run_until_complete(
                conn.fetchval("SELECT pg_try_advisory_lock($1)", PG_BACKUP_LOCK_KEY)
            )
            if not got:
                raise BackupBusy(
                    "another orc server is taking a backup of this database; "
                    "try again when it finishes"
                )
            yield
        finally:
            # Closing the session releases the advisory lock.
            loop.run_until_complete(conn.close())
    finally:
        loop.close()


@contextlib.contextmanager
def backup_lock(backup_dir: Path, database_url: str) -> Iterator[None]:
    """Hold the backup lock or raise BackupBusy at once (never wait behind a long backup)."""
    with _file_lock(backup_dir):
        if is_sqlite_url(database_url):
            yield
        else:
            with _pg_lock(database_url):
                yield
