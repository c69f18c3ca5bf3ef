"""The outbox: every change writes its event row in the change's own transaction.

Event ids must become visible in id order, or a process tailing the outbox by id could step
over an event that commits late. SQLite has one writer at a time, which gives that order;
on PostgreSQL every change transaction first takes one advisory transaction lock, so ids are
allocated and committed in turn. PostgreSQL also gets a NOTIFY so tailers wake at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from orc.db.models import Event
from orc.db.sql import is_postgres, locked_transaction

EVENT_CHANNEL = "orc_events"
CHANGE_LOCK_KEY = 0x6F7263_02
# Revoking a session or token: API processes close its WebSockets; never sent to clients.
AUTH_REVOKED_EVENT = "auth_revoked"
INTERNAL_EVENT_TYPES = (AUTH_REVOKED_EVENT,)


@asynccontextmanager
async def change_transaction() -> AsyncIterator[BaseDBAsyncClient]:
    """A write transaction in which events (and usage rows) get their ids in commit order."""
    async with locked_transaction(CHANGE_LOCK_KEY) as conn:
        yield conn


async def emit(
    conn: BaseDBAsyncClient, event_type: str, task_id: str | None, data: dict[str, Any]
) -> Event:
    """Write one event in the caller's change transaction."""
    event = await Event.create(event_type=event_type, task_id=task_id, data=data, using_db=conn)
    if is_postgres(conn):
        await conn.execute_query("SELECT pg_notify($1, $2)", [EVENT_CHANNEL, str(event.id)])
    return event


def event_message(event: Event) -> dict[str, Any]:
    """The wire form of an event (WebSocket and /api/events)."""
    return {
        "type": "event",
        "id": event.id,
        "event_type": event.event_type,
        "task_id": event.task_id,
        "data": event.data,
        "created_at": event.created_at.isoformat(),
    }


async def events_since(
    since: int, limit: int, task_id: str | None = None, internal: bool = False
) -> list[Event]:
    """Events after ``since``, oldest first (optionally of one task; internal ones on request)."""
    query = Event.filter(id__gt=since)
    if not internal:
        query = query.exclude(event_type__in=INTERNAL_EVENT_TYPES)
    if task_id is not None:
        query = query.filter(task_id=task_id)
    return await query.order_by("id").limit(limit)


async def oldest_event_id() -> int | None:
    """The smallest id still in the outbox (older ones were pruned)."""
    first = await Event.all().order_by("id").first()
    return first.id if first is not None else None


async def latest_event_id() -> int:
    last = await Event.all().order_by("-id").first()
    return last.id if last is not None else 0


async def prune_events(older_than: datetime) -> int:
    """Delete events created before ``older_than``; return how many."""
    return await Event.filter(created_at__lt=older_than).delete()
