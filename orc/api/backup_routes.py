"""Backups over HTTP: list them, and ask the job worker for one (admin routes when auth is on)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sanic import Request
from sanic.response import HTTPResponse, json

from orc.api.blueprint import JsonBlueprint
from orc.backup.manifest import list_backups
from orc.backup.reporting import backup_check
from orc.backup.state import backup_figures

bp = JsonBlueprint("backups")


@bp.get("/api/backups")
async def get_backups(request: Request) -> HTTPResponse:
    """Backups on this server's disk (newest first) and the last outcome recorded anywhere."""
    settings = request.app.ctx.settings
    manifests = await asyncio.to_thread(list_backups, settings.backup_dir)
    figures = await backup_figures()
    status, age = backup_check(
        figures, settings.backup_schedule, settings.backup_enabled, datetime.now(UTC)
    )
    return json(
        {
            "backups": [m.to_json() for m in reversed(manifests)],
            "status": status,
            "last_success_age_seconds": None if age is None else round(age, 1),
            "last_success": figures["last_success"],
            "last_failure": figures["last_failure"],
            "failures_total": figures["failures_total"],
            "schedule": settings.backup_schedule if settings.backup_enabled else None,
        }
    )


@bp.post("/api/backups")
async def post_backup(request: Request) -> HTTPResponse:
    """Queue a manual backup for the job worker; 202 with the job id."""
    # Imported at the first request: the queue (huey) and the backup jobs' code belong to the
    # worker; an idle API process does without them (about 1.5 MiB).
    from workers.enqueue import enqueue_backup

    job_id = await asyncio.to_thread(enqueue_backup, request.app.ctx.settings)
    return json(
        {"status": "queued", "job_id": job_id, "events": "watch for a backup event"},
        status=202,
    )
