"""Usage aggregation: fold new usage events into rollups every minute, and on demand."""

from __future__ import annotations

import logging

from huey import crontab

from orc.usage.rollups import fold_usage
from workers.job_runtime import run_async
from workers.queue import huey

log = logging.getLogger("orc.jobs.usage")


@huey.periodic_task(crontab(minute="*"), name="fold_usage", expires=120)
@huey.lock_task("fold_usage")
def fold_usage_job() -> int:
    """Fold every usage event not folded yet; exact and idempotent (one transaction per chunk)."""
    result = run_async(fold_usage(), timeout=600)
    if result.events:
        log.info(
            "folded usage events", extra={"events": result.events, "watermark": result.watermark}
        )
    return result.events
