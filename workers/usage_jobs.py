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

from orc.usage.pricing import PriceList
from orc.usage.rollups import fold_usage
from workers.job_runtime import run_async, spawn

log = logging.getLogger("orc.jobs.usage")
FOLD_EVERY_SECONDS = 5.0
STOP_TIMEOUT_SECONDS = 30.0


class FoldLoop:
    """Folds usage every ``interval`` seconds on the worker's event loop until ``stop()``."""

    def __init__(self, prices: PriceList, interval: float = FOLD_EVERY_SECONDS) -> None:
        self.prices = prices
        self.interval = interval
        self._stopping = asyncio.Event()
        self.future: concurrent.futures.Future[None] = spawn(self._fold_until_stopped())

    async def _fold_until_stopped(self) -> None:
        failing = False
        while not self._stopping.is_set():
            try:
                result = await fold_usage(self.prices, stopping=self._stopping)
            except Exception as error:
                # A database that is down fails every fold until it is back: one traceback,
                # then a line a fold, then a line when it works again.
                if failing:
                    log.warning("folding usage failed again: %s", error)
                else:
                    log.warning("folding usage failed", exc_info=True)
                failing = True
            else:
                if failing:
                    log.info("folding usage works again")
                failing = False
                if result.events:
                    log.info(
                        "folded usage events",
                        extra={"events": result.events, "watermark": result.watermark},
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)

    def stop(self) -> None:
        """Let a fold in progress end (each chunk is one transaction), then return."""

        async def set_stopping() -> None:
            self._stopping.set()

        try:
            run_async(set_stopping(), timeout=STOP_TIMEOUT_SECONDS)
            self.future.result(STOP_TIMEOUT_SECONDS)
        except Exception:
            log.warning("the usage fold loop did not stop cleanly", exc_info=True)
