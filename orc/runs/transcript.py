"""The transcript of a task: every agent message, stored redacted and emitted as a live event.

Tool results can be huge (a test run's log, a file read); they are trimmed to a bound, saying
how much was left out, so one chatty tool cannot fill the database or a browser.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from orc.db import default_connection
from orc.db.models import TranscriptEntry
from orc.db.sql import is_postgres
from orc.outbox.events import CHANGE_LOCK_KEY, EVENT_CHANNEL, change_transaction, emit
from orc.runs.redaction import Redactor

TRANSCRIPT_EVENT = "transcript"
TEXT_LIMIT = 16 * 1024
TOOL_RESULT_LIMIT = 8 * 1024
PAGE_LIMIT = 500
# What a transcript entry can be.
KINDS = ("prompt", "text", "thinking", "tool_use", "tool_result", "result", "note", "error")


@dataclass(frozen=True)
class TranscriptItem:
    """One message of the conversation, before it is stored."""

    kind: str
    content: dict[str, Any] = field(default_factory=dict)


def trim(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… [{len(text) - limit} more characters not kept]"


def _bounded(item: TranscriptItem) -> dict[str, Any]:
    limit = TOOL_RESULT_LIMIT if item.kind == "tool_result" else TEXT_LIMIT
    return {
        key: trim(value, limit) if isinstance(value, str) else value
        for key, value in item.content.items()
    }


def entry_json(entry: TranscriptEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "task_id": f"TASK-{entry.task_number:03d}",
        "run_id": entry.run_id,  # type: ignore[attr-defined]
        "phase": entry.phase,
        "iteration": entry.iteration,
        "kind": entry.kind,
        "content": entry.content,
        "created_at": entry.created_at.isoformat(),
    }


async def append_transcript(
    run_id: int,
    task_number: int,
    phase: str,
    iteration: int,
    items: Sequence[TranscriptItem],
    redactor: Redactor,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Store ``items`` (redacted, bounded) and emit each as a ``transcript`` event."""
    now = now or datetime.now(UTC)
    contents = [(item.kind, redactor.value(_bounded(item))) for item in items]
    conn = default_connection()
    if is_postgres(conn):
        place = (run_id, task_number, phase, iteration, now)
        return [await _append_postgres(conn, place, kind, content) for kind, content in contents]
    stored = []
    async with change_transaction() as conn:
        for kind, content in contents:
            entry = await TranscriptEntry.create(
                task_number=task_number,
                run_id=run_id,
                phase=phase,
                iteration=iteration,
                kind=kind,
                content=content,
                created_at=now,
                using_db=conn,
            )
            data = entry_json(entry)
            await emit(conn, TRANSCRIPT_EVENT, data["task_id"], data)
            stored.append(data)
    return stored


# Every agent message, on PostgreSQL: the change lock, the entry, its event and the NOTIFY in
# one statement (its own transaction), so one round trip to the server instead of six (BEGIN,
# lock, two INSERTs, NOTIFY, COMMIT). On a busy machine each round trip waits for the backend
# to be scheduled; this is the path of every message to the live transcript
# (bench/run_event_latency.py). The event's time is the row's insertion (clock_timestamp()).
_APPEND_POSTGRES = """
WITH locked AS (SELECT pg_advisory_xact_lock($1)),
entry AS (
    INSERT INTO transcript_entry (task_number, run_id, phase, iteration, kind, content, created_at)
    SELECT $2, $3, $4, $5, $6, $7::jsonb, $8 FROM locked
    RETURNING id
),
outbox AS (
    INSERT INTO event (event_type, task_id, data, created_at)
    SELECT $9, $10, jsonb_set($11::jsonb, '{id}', to_jsonb(entry.id)), clock_timestamp()
    FROM entry
    RETURNING id
)
SELECT entry.id AS entry_id, pg_notify($12, outbox.id::text) FROM entry, outbox
"""


async def _append_postgres(
    conn: BaseDBAsyncClient,
    place: tuple[int, int, str, int, datetime],
    kind: str,
    content: dict[str, Any],
) -> dict[str, Any]:
    run_id, task_number, phase, iteration, now = place
    data = {
        "id": 0,  # the entry's id, set by the statement
        "task_id": f"TASK-{task_number:03d}",
        "run_id": run_id,
        "phase": phase,
        "iteration": iteration,
        "kind": kind,
        "content": content,
        "created_at": now.isoformat(),
    }
    values = [
        CHANGE_LOCK_KEY,
        task_number,
        run_id,
        phase,
        iteration,
        kind,
        json.dumps(content),
        now,
        TRANSCRIPT_EVENT,
        data["task_id"],
        json.dumps(data),
        EVENT_CHANNEL,
    ]
    _, rows = await conn.execute_query(_APPEND_POSTGRES, values)
    data["id"] = rows[0]["entry_id"]
    return data


async def transcript_page(
    task_number: int, after: int = 0, limit: int = 100
) -> list[dict[str, Any]]:
    """Entries of a task after entry id ``after``, oldest first."""
    rows = (
        await TranscriptEntry.filter(task_number=task_number, id__gt=after)
        .order_by("id")
        .limit(min(limit, PAGE_LIMIT))
    )
    return [entry_json(row) for row in rows]


async def prune_transcripts(older_than: datetime) -> int:
    """Delete entries written before ``older_than`` (retention); how many went."""
    return await TranscriptEntry.filter(created_at__lt=older_than).delete()
