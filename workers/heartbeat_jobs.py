"""The heartbeat job: proves that this worker runs jobs, for readiness to report."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

from huey import crontab

from orc import __version__
from orc.db.models import WorkerHeartbeat
from workers.job_runtime import run_async
from workers.queue import huey

# Rows of workers that stopped long ago are removed by the heartbeat itself.
HEARTBEAT_RETENTION = timedelta(days=1)
STARTED_AT = datetime.now(UTC)


async def record_heartbeat(worker_id: str, hostname: str, pid: int, now: datetime) -> None:
    """Upsert this worker's row and prune rows of workers gone for a day."""
    await WorkerHeartbeat.update_or_create(
        worker_id=worker_id,
        defaults={
            "hostname": hostname,
            "pid": pid,
            "version": __version__,
            "started_at": STARTED_AT,
            "beat_at": now,
        },
    )
    await WorkerHeartbeat.filter(beat_at__lt=now - HEARTBEAT_RETENTION).delete()


def worker_identity() -> tuple[str, str, int]:
    hostname = socket.gethostname()
    pid = os.getpid()
    return f"{hostname}:{pid}", hostname, pid


@huey.periodic_task(crontab(minute="*"), name="heartbeat", expires=120)
def heartbeat() -> None:
    """Record that this consumer is alive and running jobs (every minute and at start)."""
    worker_id, hostname, pid = worker_identity()
    run_async(record_heartbeat(worker_id, hostname, pid, datetime.now(UTC)), timeout=30)
