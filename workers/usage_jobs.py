"""Usage aggregation: the worker folds new usage events into the rollups every few seconds.

Every usage report (the cost summary, the 30-day series, the task list's totals, the metrics)
reads the folded tables plus the events not folded yet, the tail, so its work follows the
tail's size. Folded once a minute, a busy server's tail held up to a minute of usage: thousands
of rows added up on every cost summary. Folding costs the same per event however often it runs
(it reads only the events above the watermark), so the worker folds every
``FOLD_EVERY_SECONDS`` on its event loop instead of in a once-a-minute Huey job. An idle fold is
one indexed read. Several workers (replicas) fold in turn under the fold lock.
"""

from __future__ import annotations

import asyncio
import logging

from orc.usage.pricing import PriceList
from orc.usage.rollups import fold_usage
from workers.job_runtime import PeriodicLoop

log = logging.getLogger("orc.jobs.usage")
FOLD_EVERY_SECONDS = 5.0
# A fold that takes longer is given up (its committed chunks stay) and tried again: a fold
# waiting on a lock or a connection that never answers must not stop folding for good.
FOLD_TIMEOUT_SECONDS = 600.0
STOP_TIMEOUT_SECONDS = 30.0


def start_folding(prices: PriceList) -> PeriodicLoop:
    """Fold usage every FOLD_EVERY_SECONDS on the worker's event loop until ``stop()``, which
    lets a fold in progress end its chunk (one transaction) and cancels it (the chunk rolls
    back) if it has not ended within STOP_TIMEOUT_SECONDS."""

    async def fold_once(stopping: asyncio.Event) -> None:
        # A failure is logged by the loop, which tries again in FOLD_EVERY_SECONDS.
        result = await asyncio.wait_for(fold_usage(prices, stopping=stopping), FOLD_TIMEOUT_SECONDS)
        if result.events:
            # Twelve a minute on a busy server: detail, not news.
            log.debug(
                "folded usage events",
                extra={"events": result.events, "watermark": result.watermark},
            )

    return PeriodicLoop(
        "usage fold", fold_once, FOLD_EVERY_SECONDS, stop_timeout=STOP_TIMEOUT_SECONDS
    )
