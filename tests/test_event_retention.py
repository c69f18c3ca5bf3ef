"""The outbox keeps events for ORC_EVENT_RETENTION_DAYS; the hourly job deletes older ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orc.db.models import Event
from orc.outbox.events import events_since, oldest_event_id, prune_events
from orc.tasks.lifecycle import create_task


async def test_old_events_are_pruned_and_recent_ones_kept(store):
    for title in ("old", "older", "recent"):
        await create_task(title)
    first, second, third = await events_since(0, 10)
    long_ago = datetime.now(UTC) - timedelta(days=30)
    await Event.filter(id__in=[first.id, second.id]).update(created_at=long_ago)

    deleted = await prune_events(datetime.now(UTC) - timedelta(days=7))

    assert deleted == 2
    assert [e.id for e in await events_since(0, 10)] == [third.id]
    # Clients that ask for older events learn where the outbox now starts.
    assert await oldest_event_id() == third.id
