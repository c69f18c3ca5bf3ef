"""Backup figures for Prometheus and readiness, read from the database at scrape time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from orc.config.cron import parse_cron


def backup_metric_families(figures: dict[str, Any]) -> list[Metric]:
    """orc_backup_last_success_timestamp_seconds, …_duration_seconds, …_size_bytes, failures."""
    last = figures.get("last_success")
    stamp = GaugeMetricFamily(
        "orc_backup_last_success_timestamp_seconds", "Unix time the last good backup finished"
    )
    duration = GaugeMetricFamily(
        "orc_backup_last_duration_seconds", "Seconds the last good backup took"
    )
    size = GaugeMetricFamily("orc_backup_last_size_bytes", "Size of the last good backup")
    if last:
        stamp.add_metric([], datetime.fromisoformat(last["finished_at"]).timestamp())
        duration.add_metric([], float(last["duration_seconds"]))
        size.add_metric([], float(last["size"]))
    failures = CounterMetricFamily("orc_backup_failures", "Backups that failed")
    failures.add_metric([], float(figures.get("failures_total", 0)))
    return [stamp, duration, size, failures]


@lru_cache(maxsize=8)
def _interval(schedule: str) -> timedelta | None:
    # Readiness probes run often; a schedule's period does not change.
    return parse_cron(schedule).interval(datetime.now(UTC))


def backup_check(
    figures: dict[str, Any], schedule: str, enabled: bool, now: datetime
) -> tuple[str, float | None]:
    """Readiness information: the last backup's age; a warning past twice the schedule."""
    last = figures.get("last_success")
    if not last:
        return ("none: no backup yet" if enabled else "disabled: no backup yet"), None
    age = (now - datetime.fromisoformat(last["finished_at"])).total_seconds()
    if not enabled:
        return "disabled: scheduled backups are off (ORC_BACKUP_ENABLED=false)", age
    interval = _interval(schedule)
    if interval is not None and age > 2 * interval.total_seconds():
        return (
            f"warning: last backup {int(age)}s ago (due every {int(interval.total_seconds())}s)",
            age,
        )
    failure = figures.get("last_failure")
    if failure and failure.get("at", "") > last["finished_at"]:
        return f"warning: the last backup failed: {failure.get('error', '?')}", age
    return "ok", age
