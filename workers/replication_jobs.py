"""Replication check: every minute, when ORC_LITESTREAM_ENABLED, ask Litestream how far the
replica is behind and record it (metrics, readiness, an event when it stalls or recovers)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from huey import crontab

from orc.replication.litestream import COMMAND_TIMEOUT
from orc.replication.monitor import monitor_replication
from workers.job_runtime import job_settings, run_async
from workers.queue import huey

log = logging.getLogger("orc.jobs.replication")


@huey.periodic_task(crontab(minute="*"), name="check_replication", expires=120)
@huey.lock_task("check_replication")
def check_replication_job() -> str | None:
    """Check Litestream's replication of orc.db and record the result."""
    # Two Litestream commands, each bounded by COMMAND_TIMEOUT, then one write.
    checked = run_async(
        monitor_replication(job_settings(), datetime.now(UTC)), timeout=3 * COMMAND_TIMEOUT
    )
    if checked is None:
        return None
    status, changed = checked
    if changed:
        level = logging.INFO if status.ok else logging.WARNING
        log.log(level, "replication %s", status.status, extra={"lag": status.lag_seconds})
    return status.status
