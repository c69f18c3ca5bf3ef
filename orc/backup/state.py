"""Backup outcomes in the database (ServerState), so every process reports the same figures,
and a ``backup`` event on the event stream for each one."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from orc.backup.manifest import Manifest
from orc.db import close_database, open_database
from orc.db.models import ServerState
from orc.db.url import DatabaseUrl
from orc.outbox.events import change_transaction, emit

log = logging.getLogger("orc.backup")

LAST_SUCCESS = "backup.last_success"
LAST_FAILURE = "backup.last_failure"
FAILURES_TOTAL = "backup.failures_total"
SCHEDULED_SLOT = "backup.scheduled_slot"


async def _put(conn: Any, key: str, value: str) -> None:
    await ServerState.update_or_create(key=key, defaults={"value": value}, using_db=conn)


async def read_state(key: str) -> str | None:
    row = await ServerState.get_or_none(key=key)
    return row.value if row is not None else None


async def record_success(manifest: Manifest) -> None:
    """Remember the last good backup and tell the event stream."""
    facts = {
        "name": manifest.name,
        "reason": manifest.reason,
        "kind": manifest.kind,
        "size": manifest.size,
        "finished_at": manifest.finished_at,
        "duration_seconds": manifest.duration_seconds,
    }
    async with change_transaction() as conn:
        await _put(conn, LAST_SUCCESS, json.dumps(facts))
        await emit(conn, "backup", None, {"status": "ok", **facts})


async def record_failure(reason: str, error: str, at: datetime) -> None:
    """Count a failed backup, remember why, tell the event stream."""
    async with change_transaction() as conn:
        row = await ServerState.get_or_none(key=FAILURES_TOTAL, using_db=conn)
        total = (int(row.value) if row is not None and row.value.isdigit() else 0) + 1
        await _put(conn, FAILURES_TOTAL, str(total))
        facts = {"reason": reason, "error": error, "at": at.isoformat()}
        await _put(conn, LAST_FAILURE, json.dumps(facts))
        await emit(conn, "backup", None, {"status": "failed", **facts})


async def record_quietly(coro: Any) -> None:
    """Record an outcome; a database that cannot take it (e.g. not migrated) only logs."""
    try:
        await coro
    except Exception as exc:
        log.warning("could not record the backup outcome in the database: %s", exc)


@contextlib.asynccontextmanager
async def outcome_database(database_url: DatabaseUrl | str) -> AsyncIterator[bool]:
    """Open the database to record outcomes in; yields whether it did.

    An SQLite file that does not exist stays so: a backup never creates the database.
    """
    database = DatabaseUrl.of(database_url)
    if database.is_sqlite and not database.sqlite_path.is_file():
        yield False
        return
    await open_database(database_url)
    try:
        yield True
    finally:
        await close_database()


async def set_scheduled_slot(slot: datetime) -> None:
    async with change_transaction() as conn:
        await _put(conn, SCHEDULED_SLOT, slot.isoformat())


async def backup_figures() -> dict[str, Any]:
    """What metrics and readiness show: last success, failures."""
    rows = {
        row.key: row.value
        for row in await ServerState.filter(key__in=[LAST_SUCCESS, LAST_FAILURE, FAILURES_TOTAL])
    }

    def parse(key: str) -> dict[str, Any] | None:
        try:
            value = json.loads(rows[key]) if key in rows else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    failures = rows.get(FAILURES_TOTAL, "0")
    return {
        "last_success": parse(LAST_SUCCESS),
        "last_failure": parse(LAST_FAILURE),
        "failures_total": int(failures) if failures.isdigit() else 0,
    }
