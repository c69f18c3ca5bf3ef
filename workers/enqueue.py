"""How the API asks the job worker for work: one function per on-demand job.

Enqueueing blocks on the queue file for a moment: call these through ``asyncio.to_thread``.
"""

from __future__ import annotations

from orc.config import Settings
from workers.backup_jobs import backup_now_job
from workers.queue import configure_queue


def enqueue_backup(settings: Settings) -> str:
    """Queue a manual backup (job ``backup_now``); return the job id."""
    configure_queue(settings)
    return str(backup_now_job().id)
