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
import concurrent.futures
import contextlib
import logging

from orc.db import describe_error
from orc.db.unavailable import is_database_unavailable
from orc.usage.pricing import PriceList
from orc.usage.rollups import fold_usage
from workers.job_runtime import set_event, spawn

log = logging.getLogger("orc.jobs.usage")
FOLD_EVERY_SECONDS = 5.0
# A fold that takes longer is given up (its committed chunks stay) and tried again: a fold
# waiting on a lock or a connection that never answers must not stop folding for good.
FOLD_TIMEOUT_SECONDS = 600.0
STOP_TIMEOUT_SECONDS = 30.0


class FoldLoop:
    """Folds usage every FOLD_EVERY_SECONDS on the worker's event loop until ``stop()``."""

    def __init__(self, prices: PriceList) -> None:
        self.prices = prices
        self._stopping = asyncio.Event()
        self.future: concurrent.futures.Future[None] = spawn(self._fold_until_stopped())

    async def _fold_until_stopped(self) -> None:
        while not self._stopping.is_set():
            try:
                result = await asyncio.wait_for(
                    fold_usage(self.prices, stopping=self._stopping), FOLD_TIMEOUT_SECONDS
                )
            except Exception as exc:
                # As the run loop does: a database that is away (down, a full disk) one line a
                # try until it is back; anything else with its traceback.
                if is_database_unavailable(exc):
                    log.warning("could not fold usage: %s", describe_error(exc))
                else:
                    log.warning("could not fold usage", exc_info=True)
            else:
                if result.events:
                    # Twelve a minute on a busy server: detail, not news.
                    log.debug(
                        "folded usage events",
                        extra={"events": result.events, "watermark": result.watermark},
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), FOLD_EVERY_SECONDS)

    def stop(self) -> None:
        """Let a fold in progress end its chunk (one transaction), then return; cancel it
        (the chunk rolls back) if it does not end within STOP_TIMEOUT_SECONDS."""
        set_event(self._stopping)
        try:
            self.future.result(STOP_TIMEOUT_SECONDS)
        except concurrent.futures.TimeoutError:
            log.warning("the usage fold did not end in %.0f s: cancelled", STOP_TIMEOUT_SECONDS)
            self.future.cancel()
        except Exception:
            log.warning("the usage fold loop did not stop cleanly", exc_info=True)
