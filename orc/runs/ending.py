"""How a run's end is told and recorded, even when orc's own disk or database is in trouble.

When ORC_HOME's disk fills (the agent's worktree, the SQLite database and the queue share it),
the run fails on the first write orc cannot make, and recording that ending is a write too.
Rather than leave the task ``running`` with nothing running, the worker keeps trying to record
the ending until the database takes it (space freed, PostgreSQL back), then the task shows
``failed`` with the reason and can be run again from its last committed phase.
"""

from __future__ import annotations

import asyncio
import logging

from orc.db import describe_error
from orc.db.unavailable import is_database_unavailable
from orc.runs.claims import Claim, LeaseLost, end_run

log = logging.getLogger("orc.runs")
RECORD_RETRY_SECONDS = 2.0
DISK_FULL_MARKERS = ("No space left on device", "ENOSPC", "database or disk is full")


def with_disk_hint(reason: str) -> str:
    """``reason``, saying what to do when it is a full disk."""
    if any(marker in reason for marker in DISK_FULL_MARKERS):
        return f"the disk is full: {reason}; free space there and run the task again"
    return reason


def database_failure_reason(exc: BaseException) -> str | None:
    """The reason for a run stopped by a database that cannot be written (a full disk, a
    PostgreSQL gone away), or None when ``exc`` is something else."""
    if not is_database_unavailable(exc):
        return None
    return with_disk_hint(f"orc could not write its database ({describe_error(exc)})")


async def record_end(claim: Claim, status: str, reason: str | None) -> None:
    """``end_run``, tried again until the database takes it; returns at once if another worker
    holds the run now. Cancelled when the worker stops (the run is then requeued)."""
    told = False
    while True:
        try:
            await end_run(claim, status, reason)
            if told:
                log.info("run %s: its end is recorded (%s)", claim.run_id, status)
            return
        except LeaseLost:
            return
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            if not told:
                log.warning(
                    "run %s ended (%s) but the database cannot record it yet (%s); "
                    "trying again every %.0f s",
                    claim.run_id,
                    status,
                    describe_error(exc),
                    RECORD_RETRY_SECONDS,
                )
                told = True
        await asyncio.sleep(RECORD_RETRY_SECONDS)
