"""Task runs in the job worker: the run loop on the worker's event loop, and transcript retention.

Runs last minutes to hours, so they do not take Huey's job threads (backups must still run):
the dispatcher claims and executes them on the worker's one event loop, beside the jobs.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import socket
from datetime import UTC, datetime, timedelta

from huey import crontab

from orc.config import Settings
from orc.runs.claims import worker_owner
from orc.runs.dispatcher import Dispatcher
from orc.runs.policy import run_policy
from orc.runs.transcript import prune_transcripts
from workers.job_runtime import job_settings, run_async, spawn
from workers.queue import huey

log = logging.getLogger("orc.jobs.runs")
STOP_TIMEOUT_SECONDS = 30.0


class RunLoop:
    """The worker's dispatcher and the future it runs in."""

    def __init__(self, settings: Settings) -> None:
        owner = worker_owner(socket.gethostname(), os.getpid())
        self.dispatcher = Dispatcher(
            run_policy(settings), owner, settings.max_concurrent_runs, settings.database
        )
        self.future: concurrent.futures.Future[None] = spawn(self.dispatcher.run_forever())
        log.info("run loop started", extra={"max_concurrent_runs": settings.max_concurrent_runs})

    def stop(self) -> None:
        """Interrupt runs in flight and hand them back to the queue, then return."""
        self.dispatcher.stop_threadsafe()
        try:
            self.future.result(STOP_TIMEOUT_SECONDS)
        except Exception:
            log.warning("the run loop did not stop cleanly", exc_info=True)


@huey.periodic_task(crontab(minute="17"))
def prune_transcripts_job() -> None:
    days = job_settings().transcript_retention_days
    cutoff = datetime.now(UTC) - timedelta(days=days)
    deleted = run_async(prune_transcripts(cutoff), timeout=600)
    if deleted:
        log.info("transcript entries pruned", extra={"deleted": deleted})
