"""Outbox retention: events older than ORC_EVENT_RETENTION_DAYS are deleted every hour."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from huey import crontab

from orc.outbox.events import prune_events
from workers.job_runtime import job_settings, run_async
from workers.queue import huey

log = logging.getLogger("orc.jobs.events")


@huey.periodic_task(crontab(minute="17"), name="prune_events", expires=3600)
@huey.lock_task("prune_events")
def prune_events_job() -> int:
    """Delete outbox rows older than the retention period."""
    days = job_settings().event_retention_days
    deleted = run_async(prune_events(datetime.now(UTC) - timedelta(days=days)), timeout=600)
    if deleted:
        log.info("pruned events", extra={"deleted": deleted, "retention_days": days})
    return deleted
