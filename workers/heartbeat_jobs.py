"""The heartbeat job: proves that this worker runs jobs, for readiness to report."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime

from huey import crontab

from orc.health.heartbeat import record_heartbeat
from workers.job_runtime import run_async
from workers.queue import huey

STARTED_AT = datetime.now(UTC)


@huey.periodic_task(crontab(minute="*"), name="heartbeat", expires=120)
def heartbeat() -> None:
    """Record that this consumer is alive and running jobs (every minute and at start)."""
    hostname, pid = socket.gethostname(), os.getpid()
    now = datetime.now(UTC)
    run_async(record_heartbeat(f"{hostname}:{pid}", hostname, pid, STARTED_AT, now), timeout=30)
