"""Worker heartbeats: each job worker proves every minute that it runs jobs (readiness reads it)."""

from __future__ import annotations

from datetime import datetime, timedelta

from orc import __version__
from orc.db.models import WorkerHeartbeat

# Rows of workers that stopped long ago are removed by the heartbeat itself.
HEARTBEAT_RETENTION = timedelta(days=1)


async def record_heartbeat(
    worker_id: str, hostname: str, pid: int, started_at: datetime, now: datetime
) -> None:
    """Upsert this worker's row and prune rows of workers gone for a day."""
    await WorkerHeartbeat.update_or_create(
        worker_id=worker_id,
        defaults={
            "hostname": hostname,
            "pid": pid,
            "version": __version__,
            "started_at": started_at,
            "beat_at": now,
        },
    )
    await WorkerHeartbeat.filter(beat_at__lt=now - HEARTBEAT_RETENTION).delete()
