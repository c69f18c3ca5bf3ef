"""``orc worker``: run the Huey consumer with thread workers.

SIGINT stops gracefully: running jobs finish, however long they take (the process supervisor
bounds that: `orc serve` kills after ORC_SHUTDOWN_TIMEOUT, supervisord after stopwaitsecs).
SIGTERM stops at once and a running job is lost (periodic jobs run again on schedule);
supervisord therefore uses ``stopsignal=INT``.
"""

from __future__ import annotations

import gc
import logging
import signal

import workers.auth_jobs
import workers.backup_jobs
import workers.event_jobs
import workers.heartbeat_jobs
import workers.replication_jobs
import workers.run_jobs
import workers.table_jobs
from orc.config import Settings
from orc.usage.pricing import load_prices
from workers.heap_trim import start_heap_trims
from workers.job_runtime import PeriodicLoop, close_runtime, start_runtime
from workers.queue import configure_queue
from workers.usage_jobs import start_folding

log = logging.getLogger("orc.worker")
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


def run_consumer(settings: Settings) -> None:
    """Block running jobs until SIGINT/SIGTERM.

    A stop signal that comes while the worker starts is held (blocked by `orc worker` and by
    the launcher) until the consumer's handlers are in place: the consumer then stops as soon as it
    runs. Before this order, such a signal raised KeyboardInterrupt anywhere in the start-up and
    left a traceback, the database half-closed or the process hanging on its threads.
    """
    huey = configure_queue(settings)
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
    consumer._set_signal_handlers()
    # Before any thread starts: threads (and the agents they spawn) inherit the signal mask.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    runs: workers.run_jobs.RunLoop | None = None
    folds: PeriodicLoop | None = None
    trims: PeriodicLoop | None = None
    try:
        # A broken pricing.yaml stops the worker before it claims any run.
        prices = load_prices(settings.home)
        start_runtime(settings)
        runs = workers.run_jobs.RunLoop(settings)
        folds = start_folding(prices)
        trims = start_heap_trims()
        log.info("job worker started", extra={"threads": settings.worker_threads})
        # What start-up imported stays out of the full collections (see orc.runs.agent._load_sdk).
        gc.freeze()
        consumer.run()
    finally:
        if trims is not None:
            trims.stop()
        if folds is not None:
            folds.stop()
        if runs is not None:
            runs.stop()
        close_runtime()
