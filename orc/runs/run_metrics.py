"""Run figures for Prometheus, read from the database at scrape time (right in every process)."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.metrics_core import Metric
from tortoise.functions import Count

from orc.db import default_connection
from orc.db.models import Run
from orc.db.sql import fetch, is_postgres
from orc.runs.claims import ENDED, QUEUED

PHASE_SECONDS_SQL = {
    "postgres": "SUM(EXTRACT(EPOCH FROM (finished_at - started_at)))",
    "sqlite": "SUM((julianday(finished_at) - julianday(started_at)) * 86400.0)",
}


async def run_metric_families() -> list[Metric]:
    """orc_runs_queued, orc_runs_total{outcome}, orc_phase_duration_seconds{phase}."""
    counts = dict(
        await Run.filter(status__in=(QUEUED, *ENDED))
        .annotate(n=Count("id"))
        .group_by("status")
        .values_list("status", "n")
    )
    queued = GaugeMetricFamily("orc_runs_queued", "Runs waiting for a job worker")
    queued.add_metric([], counts.get(QUEUED, 0))
    total = CounterMetricFamily("orc_runs", "Runs that ended, by outcome", labels=["outcome"])
    for outcome in ENDED:
        total.add_metric([outcome], counts.get(outcome, 0))
    conn = default_connection()
    seconds = PHASE_SECONDS_SQL["postgres" if is_postgres(conn) else "sqlite"]
    rows = await fetch(
        conn,
        f"SELECT name, COUNT(*), {seconds} FROM task_phase "  # noqa: S608 - constant SQL
        "WHERE status = 'completed' AND started_at IS NOT NULL AND finished_at IS NOT NULL "
        "GROUP BY name ORDER BY name",
    )
    durations = SummaryMetricFamily(
        "orc_phase_duration_seconds", "Duration of completed phases", labels=["phase"]
    )
    for row in rows:
        name, count, total_seconds = row[0], row[1], row[2]
        durations.add_metric([name], count_value=int(count), sum_value=float(total_seconds or 0))
    return [queued, total, durations]
