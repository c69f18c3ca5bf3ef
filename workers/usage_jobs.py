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
# Events folded per transaction by the minutely job. On SQLite a fold holds the database's one
# write lock: a minute of a busy server's usage (15,000 events) in one transaction held it for
# 150-220 ms, growing with the tables, and every usage report and task change waited behind
# it. In chunks of 2,000 each hold is about 30 ms and writers get in between (bench/README.md).
JOB_CHUNK_EVENTS = 2_000


@functools.cache
def worker_prices() -> PriceList:
    """The price list, read once per worker as the API reads it once per process."""
    return load_prices(job_settings().home)


@huey.periodic_task(crontab(minute="*"), name="fold_usage", expires=120)
@huey.lock_task("fold_usage")
def fold_usage_job() -> int:
    """Fold every usage event not folded yet; exact and idempotent (one transaction per chunk)."""
    result = run_async(fold_usage(worker_prices(), chunk=JOB_CHUNK_EVENTS), timeout=600)
    if result.events:
        log.info(
            "folded usage events", extra={"events": result.events, "watermark": result.watermark}
        )
    return result.events
