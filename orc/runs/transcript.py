"""The transcript of a task: every agent message, stored redacted and emitted as a live event.

Tool results can be huge (a test run's log, a file read); they are trimmed to a bound, saying
how much was left out, so one chatty tool cannot fill the database or a browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orc.db.models import TranscriptEntry
from orc.outbox.events import change_transaction, emit
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
    stored = []
    async with change_transaction() as conn:
        for item in items:
            entry = await TranscriptEntry.create(
                task_number=task_number,
                run_id=run_id,
                phase=phase,
                iteration=iteration,
                kind=item.kind,
                content=redactor.value(_bounded(item)),
                created_at=now,
                using_db=conn,
            )
            data = entry_json(entry)
            await emit(conn, TRANSCRIPT_EVENT, data["task_id"], data)
            stored.append(data)
    return stored


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
