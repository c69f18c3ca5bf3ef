"""Backup jobs: the scheduled backup (checked every minute) and backups asked for by the API."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from huey import crontab

from orc.backup.exclusive import BackupBusy
from orc.backup.manifest import BackupError
from orc.backup.scheduled import run_scheduled_backup
from orc.backup.service import backup_and_record
from workers.job_runtime import job_settings, run_async
from workers.queue import huey

log = logging.getLogger("orc.jobs.backups")


@huey.periodic_task(crontab(minute="*"), name="scheduled_backup", expires=120)
@huey.lock_task("scheduled_backup")
def scheduled_backup_job() -> str | None:
    """Take the backup ORC_BACKUP_SCHEDULE asks for, once per firing, then prune."""
    # No timeout: a big database takes long, and the backup lock keeps two backups apart.
    try:
        manifest = run_async(run_scheduled_backup(job_settings(), datetime.now(UTC)))
    except BackupError as exc:
        log.error("scheduled backup failed: %s", exc)
        raise
    if manifest is not None:
        log.info(
            "scheduled backup taken",
            extra={
                "backup": manifest.name,
                "size": manifest.size,
                "seconds": manifest.duration_seconds,
            },
        )
        return manifest.name
    return None


@huey.task(name="backup_now", expires=3600)
def backup_now_job() -> dict[str, Any]:
    """A manual backup asked for through the API; the outcome is also recorded and emitted."""
    try:
        manifest = run_async(backup_and_record(job_settings(), "manual"))
    except BackupBusy as exc:
        return {"status": "busy", "error": str(exc)}
    except BackupError as exc:
        log.error("backup failed: %s", exc)
        return {"status": "failed", "error": str(exc)}
    log.info("backup taken", extra={"backup": manifest.name, "size": manifest.size})
    return {"status": "ok", "name": manifest.name}
