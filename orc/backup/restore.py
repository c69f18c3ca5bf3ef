"""``restore_backup``: check the backup, take a safety backup, then replace the database.

SQLite: the backup is copied to a new file beside ``orc.db``, integrity-checked, fsynced and
renamed over it, after the old ``-wal``/``-shm`` are removed (a stale WAL would be replayed
into the restored file). PostgreSQL: ``pg_restore --clean --if-exists`` in one transaction.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from orc.backup import postgres, sqlite
from orc.backup.create import take_backup_locked
from orc.backup.exclusive import backup_lock
from orc.backup.files import fsync_dir, fsync_file, remove_quietly
from orc.backup.manifest import BackupError, Manifest
from orc.backup.progress import QuietReporter, Reporter
from orc.backup.verify import check_backup
from orc.config import Settings
from orc.db.private_file import make_private
from orc.db.schema import known_migrations
from orc.db.url import DatabaseUrl

STOP_HINT = (
    "stop orc first (Ctrl-C or SIGTERM to `orc serve`; `docker compose stop orc`; "
    "`supervisorctl stop all` in the container), or pass --force if nothing uses it"
)


class DatabaseInUse(BackupError):
    """A server (or another process) is using the database."""

    status = 409
    code = "database_in_use"


def sqlite_users(db: Path) -> list[int]:
    """Pids of other processes that have the database (or its WAL) open."""
    targets = {str(p) for p in (db, *sqlite.sidecars(db))}
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except OSError:
            continue
        if links & targets:
            pids.append(int(entry.name))
    return sorted(pids)


async def check_not_in_use(database_url: DatabaseUrl | str) -> None:
    """Raise DatabaseInUse when another process uses the database."""
    database = DatabaseUrl.of(database_url)
    if database.is_sqlite:
        db = database.sqlite_path.resolve()
        pids = await asyncio.to_thread(sqlite_users, db)
        if pids:
            raise DatabaseInUse(
                f"{db} is in use by process(es) {', '.join(map(str, pids))}; {STOP_HINT}"
            )
        return
    sessions = await postgres.other_sessions(database_url)
    if sessions:
        who = ", ".join(f"pid {s['pid']} {s['application_name'] or ''}".strip() for s in sessions)
        raise DatabaseInUse(
            f"the database has {len(sessions)} other connection(s) ({who}); {STOP_HINT}"
        )


def check_schema_known(manifest: Manifest) -> None:
    """Refuse a backup made by a newer orc (it has migrations this one does not ship)."""
    unknown = sorted(set(manifest.migrations) - set(known_migrations()))
    if unknown:
        raise BackupError(
            f"{manifest.name} was made by a newer orc ({manifest.orc_version}, schema "
            f"{manifest.schema_version}); this orc does not know {', '.join(unknown)}: "
            "upgrade orc, then restore"
        )


async def restore_backup(
    settings: Settings, manifest: Manifest, force: bool = False, reporter: Reporter | None = None
) -> Manifest | None:
    """Restore ``manifest``'s backup; return the safety backup taken first (None if no db)."""
    reporter = reporter or QuietReporter()
    check_schema_known(manifest)
    async with backup_lock(settings.backup_dir, settings.database_url):
        if not force:
            await check_not_in_use(settings.database_url)
        reporter.step(f"verifying {manifest.name}", manifest.size)
        # Checksum now; the integrity check runs on the restored copy before the swap.
        contents = manifest.kind == "postgres"
        await asyncio.to_thread(check_backup, settings.backup_dir, manifest, contents)
        safety = None
        if _database_exists(settings.database_url):
            reporter.step("taking a safety backup of the current database")
            safety = await take_backup_locked(settings, "pre-restore")
        path = settings.backup_dir / manifest.name
        if manifest.kind == "sqlite":
            if not settings.database.is_sqlite:
                raise BackupError(
                    f"{manifest.name} is an SQLite backup; DATABASE_URL is PostgreSQL"
                )
            reporter.step("restoring", manifest.size)
            db = settings.database.sqlite_path
            await asyncio.to_thread(_restore_sqlite, db, path, manifest.gzip)
        else:
            if settings.database.is_sqlite:
                raise BackupError(f"{manifest.name} is a PostgreSQL dump; DATABASE_URL is SQLite")
            reporter.step("restoring with pg_restore (one transaction)")
            await asyncio.to_thread(postgres.restore_postgres, settings.database_url, path)
        return safety


def _database_exists(database_url: DatabaseUrl | str) -> bool:
    database = DatabaseUrl.of(database_url)
    if database.is_sqlite:
        db = database.sqlite_path
        return db.is_file() and db.stat().st_size > 0
    return True


def _restore_sqlite(db: Path, backup: Path, gzip: bool) -> None:
    db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staged = db.with_name(f".{db.name}.restoring-{os.getpid()}")
    try:
        remove_quietly(staged)
        make_private(staged)  # it becomes orc.db, mode and all
        if gzip:
            sqlite.gunzip_file(backup, staged)
        else:
            _copy(backup, staged)
        problem = sqlite.integrity_problem(staged)
        if problem is not None:
            raise BackupError(f"the restored copy failed its integrity check: {problem}")
        fsync_file(staged)
        remove_quietly(*sqlite.sidecars(db))
        os.replace(staged, db)
        fsync_dir(db.parent)
    finally:
        remove_quietly(staged)


def _copy(source: Path, dest: Path) -> None:
    import shutil

    try:
        shutil.copyfile(source, dest)
    except OSError as exc:
        raise BackupError(f"cannot copy {source.name} next to the database: {exc}") from None
