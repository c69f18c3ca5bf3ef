"""Auth housekeeping: ended sessions and abandoned sign-ins are deleted every hour."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from huey import crontab

from orc.auth.cleanup import prune_auth_state
from workers.job_runtime import run_async
from workers.queue import huey

log = logging.getLogger("orc.jobs.auth")


@huey.periodic_task(crontab(minute="23"), name="prune_auth_state", expires=3600)
@huey.lock_task("prune_auth_state")
def prune_auth_state_job() -> dict[str, int]:
    """Delete sessions that ended and sign-ins that were never finished."""
    deleted = run_async(prune_auth_state(datetime.now(UTC)), timeout=600)
    if any(deleted.values()):
        log.info("pruned auth state", extra=deleted)
    return deleted
