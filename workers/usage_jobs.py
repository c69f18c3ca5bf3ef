"""Usage aggregation: fold new usage events into rollups every minute, and on demand."""

from __future__ import annotations

import functools
import logging

from huey import crontab

from orc.usage.pricing import PriceList, load_prices
from orc.usage.rollups import fold_usage
from workers.job_runtime import job_settings, run_async
from workers.queue import huey

log = logging.getLogger("orc.jobs.usage")


@functools.cache
def worker_prices() -> PriceList:
    """The price list, read once per worker as the API reads it once per process."""
    return load_prices(job_settings().home)


@huey.periodic_task(crontab(minute="*"), name="fold_usage", expires=120)
@huey.lock_task("fold_usage")
def fold_usage_job() -> int:
    """Fold every usage event not folded yet; exact and idempotent (one transaction per chunk)."""
    result = run_async(fold_usage(worker_prices()), timeout=600)
    if result.events:
        log.info(
            "folded usage events", extra={"events": result.events, "watermark": result.watermark}
        )
    return result.events
