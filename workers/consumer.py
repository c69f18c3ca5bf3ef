"""``orc worker``: run the Huey consumer with thread workers.

SIGINT stops gracefully: running jobs finish, however long they take (the process supervisor
bounds that: `orc serve` kills after ORC_SHUTDOWN_TIMEOUT, supervisord after stopwaitsecs).
SIGTERM stops at once and a running job is lost (periodic jobs run again on schedule);
supervisord therefore uses ``stopsignal=INT``.
"""

from __future__ import annotations

import logging
import signal

import workers.auth_jobs
import workers.backup_jobs
import workers.event_jobs
import workers.heartbeat_jobs
import workers.replication_jobs
import workers.run_jobs
import workers.usage_jobs
from orc.config import Settings
from workers.job_runtime import close_runtime, start_runtime
from workers.queue import configure_queue

log = logging.getLogger("orc.worker")


def run_consumer(settings: Settings) -> None:
    """Block running jobs until SIGINT/SIGTERM."""
    huey = configure_queue(settings)
    start_runtime(settings)
    runs = workers.run_jobs.RunLoop(settings)
    consumer = huey.create_consumer(
        workers=settings.worker_threads,
        worker_type="thread",
        periodic=True,
        initial_delay=0.1,
        max_delay=2.0,
        check_worker_health=True,
    )
    # Huey re-executes sys.argv on SIGHUP; under `python -m orc` that would run orc/ as a
    # script directory. Let SIGHUP stop the worker instead; orc serve or supervisord restart it.
    consumer._signal_actions.pop(signal.SIGHUP, None)
    log.info("job worker started", extra={"threads": settings.worker_threads})
    try:
        consumer.run()
    finally:
        runs.stop()
        close_runtime()
