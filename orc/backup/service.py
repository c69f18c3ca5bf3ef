"""Backups as the CLI, the worker and migrations take them: run, record the outcome, prune."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable
from datetime import datetime

from orc.backup.create import take_backup, take_backup_locked
from orc.backup.exclusive import BackupBusy, backup_lock
from orc.backup.manifest import BackupError, Manifest, now_utc
from orc.backup.progress import Reporter
from orc.backup.retention import Policy, prune_backups
from orc.config import Settings


def policy_of(settings: Settings) -> Policy:
    return Policy(
        daily=settings.backup_keep_daily,
        weekly=settings.backup_keep_weekly,
        monthly=settings.backup_keep_monthly,
        capped=settings.backup_keep_pre_migration,
    )


def _as_backup_error(exc: Exception) -> BackupError:
    if isinstance(exc, BackupError):
        return exc
    if isinstance(exc, OSError):
        text = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename else ""
        return BackupError(f"backup failed: {text}{where}")
    return BackupError(f"backup failed: {type(exc).__name__}: {exc}")


async def backup_and_record(
    settings: Settings,
    reason: str,
    reporter: Reporter | None = None,
    prune: bool = False,
    locked: bool = False,
    record: bool = True,
) -> Manifest:
    """Take a backup, record success or failure in the database, optionally prune after it.

    ``locked``: the caller holds the backup lock already. BackupBusy is not a failure.
    ``record=False``: the database is not open (there is none to record in).
    """
    started = now_utc()
    take = take_backup_locked if locked else take_backup
    manifest = await _recorded(take(settings, reason, reporter), reason, started, record)
    if prune or reason in ("pre-migration", "pre-restore"):
        await prune_locked_or_not(settings, locked)
    return manifest


async def backup_opening_database(
    settings: Settings, reason: str, reporter: Reporter | None = None
) -> Manifest:
    """``backup_and_record`` for a command that has not opened the database.

    The copy starts first; the database to record the outcome in opens while it runs (the
    ORM's import alone is about half a second of CPU: a twentieth of a 1 GiB backup).
    """
    started = now_utc()
    backup = asyncio.ensure_future(take_backup(settings, reason, reporter))
    try:
        # In a thread: the event loop goes on starting the backup meanwhile.
        state = await asyncio.to_thread(importlib.import_module, "orc.backup.state")
        async with state.outcome_database(settings.database_url) as opened:
            return await _recorded(backup, reason, started, opened)
    finally:
        if not backup.done():  # opening the database failed: the backup is not left behind
            backup.cancel()
        await asyncio.gather(backup, return_exceptions=True)  # its outcome is collected


async def _recorded(
    backup: Awaitable[Manifest], reason: str, started: datetime, record: bool
) -> Manifest:
    """Await the backup; record its success or failure (BackupBusy is not a failure)."""
    # Here, not at the top: the ORM behind it is what backup_opening_database defers.
    from orc.backup.state import record_failure, record_quietly, record_success

    try:
        manifest = await backup
    except BackupBusy:
        raise
    except Exception as exc:
        error = _as_backup_error(exc)
        if record:
            await record_quietly(record_failure(reason, str(error), started))
        raise error from None
    if record:
        await record_quietly(record_success(manifest))
    return manifest


async def prune_locked_or_not(settings: Settings, locked: bool) -> list[Manifest]:
    """Apply the retention policy (taking the lock unless the caller holds it)."""
    if locked:
        return await asyncio.to_thread(prune_backups, settings.backup_dir, policy_of(settings))
    async with backup_lock(settings.backup_dir, settings.database_url):
        return await asyncio.to_thread(prune_backups, settings.backup_dir, policy_of(settings))
