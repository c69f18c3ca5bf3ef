"""Replication check: every minute, when ORC_LITESTREAM_ENABLED, ask Litestream how far the
replica is behind and record it (metrics, readiness, an event when it stalls or recovers)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from huey import crontab

from orc.config import load_settings
from orc.db.url import is_sqlite_url, sqlite_path
from orc.replication.litestream import (
    ReplicationError,
    ReplicationStatus,
    check_replication,
    load_litestream_db,
)
from orc.replication.status import record_replication
from workers.job_runtime import run_async
from workers.queue import huey

log = logging.getLogger("orc.jobs.replication")


@huey.periodic_task(crontab(minute="*"), name="check_replication", expires=120)
@huey.lock_task("check_replication")
def check_replication_job() -> str | None:
    """Check Litestream's replication of orc.db and record the result."""
    settings = load_settings()
    if not settings.litestream_enabled or not is_sqlite_url(settings.database_url):
        return None
    now = datetime.now(UTC)
    try:
        db = load_litestream_db(
            settings.litestream_config, Path(sqlite_path(settings.database_url))
        )
        status = check_replication(db, now)
    except ReplicationError as exc:
        status = ReplicationStatus(
            status=f"error: {exc}", up=False, lag_seconds=0.0, checked_at=now.isoformat()
        )
    if run_async(record_replication(status), timeout=60):
        level = logging.INFO if status.ok else logging.WARNING
        log.log(level, "replication %s", status.status, extra={"lag": status.lag_seconds})
    return status.status
