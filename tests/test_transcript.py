"""The transcript: stored redacted and bounded, emitted live, paged, pruned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orc.db.models import Event, Run, Task
from orc.runs.redaction import REDACTED, Redactor
from orc.runs.transcript import (
    TOOL_RESULT_LIMIT,
    TranscriptItem,
    append_transcript,
    prune_transcripts,
    transcript_page,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


async def test_entries_are_redacted_bounded_emitted_and_paged(store):
    task = await Task.create(title="t", weight="trivial", status="running")
    run = await Run.create(task=task, status="running", queued_at=T0)
    redactor = Redactor(["server-token-0123456789"])
    items = [
        TranscriptItem("text", {"text": "I will use server-token-0123456789 now"}),
        TranscriptItem(
            "tool_use", {"name": "Bash", "input": {"command": "env | grep sk-ant-zzzzzzzzzz"}}
        ),
        TranscriptItem(
            "tool_result", {"content": "x" * (TOOL_RESULT_LIMIT + 500), "is_error": False}
        ),
    ]
    stored = await append_transcript(run.id, task.number, "implement", 1, items, redactor, now=T0)

    assert stored[0]["content"] == {"text": f"I will use {REDACTED} now"}
    assert stored[1]["content"]["input"] == {"command": f"env | grep {REDACTED}"}
    result = stored[2]["content"]["content"]
    assert result.startswith("x" * TOOL_RESULT_LIMIT) and "[500 more characters not kept]" in result
    assert stored[0]["task_id"] == f"TASK-{task.number:03d}" and stored[0]["phase"] == "implement"

    events = await Event.filter(event_type="transcript").order_by("id")
    assert [e.data for e in events] == stored
    entries = await transcript_page(task.number)
    assert entries == stored
    assert "server-token" not in str([e.data for e in events])

    page = await transcript_page(task.number, after=stored[0]["id"], limit=1)
    assert [p["id"] for p in page] == [stored[1]["id"]]
    assert await transcript_page(task.number + 1) == []

    assert await prune_transcripts(T0 + timedelta(seconds=1)) == 3
    assert await transcript_page(task.number) == []
