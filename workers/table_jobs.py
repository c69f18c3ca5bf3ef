"""Table upkeep on PostgreSQL: what autovacuum would do, for the tables it leaves alone."""

from __future__ import annotations

import logging

from huey import crontab

from orc.db.maintenance import keep_tables_planned
from workers.job_runtime import run_async
from workers.queue import huey

log = logging.getLogger("orc.jobs.tables")
_warned = False


@huey.periodic_task(crontab(minute="*"), name="keep_tables_planned", expires=120)
@huey.lock_task("keep_tables_planned")
def keep_tables_planned_job() -> list[str]:
    """ANALYZE (and VACUUM) the tables due for it that autovacuum does not look after."""
    global _warned
    upkeep = run_async(keep_tables_planned(), timeout=600)
    if upkeep is None:
        return []
    if not upkeep.cluster_autovacuum and not _warned:
        _warned = True
        log.warning(
            "PostgreSQL runs with autovacuum off: no table gets statistics or has its dead "
            "rows cleaned up. orc now analyzes and vacuums its own tables once a minute, by "
            "autovacuum's thresholds; other databases in the cluster still go without. "
            "Turn it on: ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf();"
        )
    if upkeep.analyzed:
        log.info(
            "analyzed tables autovacuum leaves alone",
            extra={"analyzed": upkeep.analyzed, "vacuumed": upkeep.vacuumed},
        )
    return upkeep.analyzed
