"""``take_backup``: copy, check, checksum, fsync, rename, then write the manifest.

A coroutine: the file work and the subprocesses run in threads (``asyncio.to_thread``), so
the event loop of the worker, of ``orc migrate`` or of the CLI stays free while a big
database is copied.
"""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import timedelta
from pathlib import Path

from orc import __version__
from orc.backup import postgres, sqlite
from orc.backup.exclusive import backup_lock
from orc.backup.files import publish, remove_quietly, sha256_file
from orc.backup.manifest import (
    REASONS,
    TEMP_PREFIX,
    Manifest,
    backup_name,
    now_utc,
    temp_path,
    write_manifest,
)
from orc.backup.progress import QuietReporter, Reporter
from orc.config import Settings
from orc.db.private_file import make_private


async def take_backup(
    settings: Settings, reason: str, reporter: Reporter | None = None
) -> Manifest:
    """Take one backup now; raise BackupBusy if another runs, BackupError if it fails."""
    async with backup_lock(settings.backup_dir, settings.database_url):
        return await take_backup_locked(settings, reason, reporter)


async def take_backup_locked(
    settings: Settings, reason: str, reporter: Reporter | None = None
) -> Manifest:
    """``take_backup`` for a caller that already holds the backup lock."""
    if reason not in REASONS:
        raise ValueError(f"unknown backup reason {reason!r}")
    reporter = reporter or QuietReporter()
    backup_dir = settings.backup_dir
    backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    await asyncio.to_thread(remove_stale_temps, backup_dir)
    started = now_utc()
    clock = time.monotonic()
    sqlite_db = settings.database.is_sqlite
    kind = "sqlite" if sqlite_db else "postgres"
    gzip = settings.backup_gzip and sqlite_db  # pg_dump -Fc is compressed already
    name = backup_name(kind, reason, started, gzip)
    while (backup_dir / name).exists():  # two backups in one millisecond
        started += timedelta(milliseconds=1)
        name = backup_name(kind, reason, started, gzip)
    temp = temp_path(backup_dir, name)
    raw = temp.with_name(temp.name + ".raw") if gzip else temp
    try:
        # Private before the first byte is copied in (a backup holds everything the database
        # holds); the copy, gzip and pg_dump write into these files and keep their mode.
        make_private(temp)
        make_private(raw)
        if sqlite_db:
            migrations, sha = await asyncio.to_thread(
                _sqlite_copy, settings, raw, temp if gzip else None, reporter
            )
        else:
            migrations, sha = await _postgres_dump(settings, temp, reporter)
        reporter.step("saving")
        size = temp.stat().st_size
        final = backup_dir / name
        await asyncio.to_thread(publish, temp, final)
    except BaseException:
        remove_quietly(temp, raw, *sqlite.companions(temp), *sqlite.companions(raw))
        raise
    finished = now_utc()
    manifest = Manifest(
        name=name,
        kind=kind,
        reason=reason,
        size=size,
        sha256=sha,
        gzip=gzip,
        schema_version=migrations[-1] if migrations else None,
        migrations=migrations,
        orc_version=__version__,
        started_at=started.isoformat(),
        finished_at=finished.isoformat(),
        duration_seconds=round(time.monotonic() - clock, 3),
        verified_at=finished.isoformat(),
        verified_ok=True,
        extra={"host": socket.gethostname(), "check": _check_name(settings, kind)},
    )
    try:
        await asyncio.to_thread(write_manifest, backup_dir, manifest)
    except BaseException:
        remove_quietly(final)
        raise
    return manifest


def _sqlite_copy(
    settings: Settings, dest: Path, gzipped: Path | None, reporter: Reporter
) -> tuple[list[str], str]:
    """Copy, check and hash the database into ``dest`` (then into ``gzipped``, if given)."""
    source = settings.database.sqlite_path
    wal = sqlite.sidecars(source)[0]
    estimate = source.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    sqlite.copy_sqlite(source, dest, reporter.step(f"copying {source.name}", estimate))
    migrations = sqlite.applied_migrations(dest)
    full = settings.backup_check == "full"
    step = reporter.step("checking integrity", dest.stat().st_size)
    sha = sqlite.check_and_hash(dest, full, step)
    if gzipped is not None:
        sqlite.gzip_file(dest, gzipped, reporter.step("compressing", dest.stat().st_size))
        remove_quietly(dest)
        sha = sha256_file(gzipped)
    return migrations, sha


async def _postgres_dump(
    settings: Settings, dest: Path, reporter: Reporter
) -> tuple[list[str], str]:
    pg_dump, migrations = await postgres.check_dump_tool(settings.database_url)
    on_bytes = reporter.step("pg_dump")
    await asyncio.to_thread(postgres.dump_postgres, settings.database_url, pg_dump, dest, on_bytes)
    # The check and the checksum read the same file (from the page cache) at the same time.
    on_bytes = reporter.step("checking with pg_restore --list, checksum", dest.stat().st_size)
    _, sha = await asyncio.gather(
        asyncio.to_thread(postgres.check_dump, dest),
        asyncio.to_thread(sha256_file, dest, on_bytes),
    )
    return migrations, sha


def _check_name(settings: Settings, kind: str) -> str:
    if kind == "postgres":
        return "pg_restore --list"
    return "integrity_check" if settings.backup_check == "full" else "quick_check"


def remove_stale_temps(backup_dir: Path) -> list[Path]:
    """Delete temp files of backups that died (call only while holding the backup lock)."""
    stale = [p for p in backup_dir.glob(TEMP_PREFIX + "*") if p.is_file()]
    remove_quietly(*stale)
    return stale
