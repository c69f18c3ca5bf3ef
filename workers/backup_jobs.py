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
from orc.config import load_settings
from workers.job_runtime import run_async
from workers.queue import huey

log = logging.getLogger("orc.jobs.backups")


def _run(coro: Any) -> Any:
    return run_async(coro, timeout=120)


@huey.periodic_task(crontab(minute="*"), name="scheduled_backup", expires=120)
@huey.lock_task("scheduled_backup")
def scheduled_backup_job() -> str | None:
    """Take the backup ORC_BACKUP_SCHEDULE asks for, once per firing, then prune."""
    settings = load_settings()
    try:
        manifest = run_scheduled_backup(settings, datetime.now(UTC), _run)
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
    settings = load_settings()
    try:
        manifest = backup_and_record(settings, "manual", _run)
    except BackupBusy as exc:
        return {"status": "busy", "error": str(exc)}
    except BackupError as exc:
        log.error("backup failed: %s", exc)
        return {"status": "failed", "error": str(exc)}
    log.info("backup taken", extra={"backup": manifest.name, "size": manifest.size})
    return {"status": "ok", "name": manifest.name}
