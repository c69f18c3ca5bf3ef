"""The last replication check in the database (ServerState), for metrics, readiness and events."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from orc.db.models import ServerState
from orc.outbox.events import change_transaction, emit
from orc.replication.litestream import ReplicationStatus

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

STATUS_KEY = "replication.status"


async def record_replication(status: ReplicationStatus) -> bool:
    """Store a check; emit a ``replication`` event when it turns bad or recovers.

    Returns True when an event was emitted.
    """
    async with change_transaction() as conn:
        row = await ServerState.get_or_none(key=STATUS_KEY, using_db=conn)
        before = _parse(row.value if row else None)
        was_ok = before is None or str(before.get("status", "ok")) == "ok"
        await ServerState.update_or_create(
            key=STATUS_KEY, defaults={"value": json.dumps(status.to_json())}, using_db=conn
        )
        if was_ok != status.ok:
            await emit(conn, "replication", None, status.to_json())
            return True
    return False


def _parse(text: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


async def last_replication() -> dict[str, Any] | None:
    row = await ServerState.get_or_none(key=STATUS_KEY)
    return _parse(row.value if row else None)


def current_lag(last: dict[str, Any], now: datetime) -> float:
    """The lag now: a replica that was behind at the last check has fallen further behind."""
    lag = float(last.get("lag_seconds") or 0.0)
    if lag > 0:
        lag += max(0.0, (now - datetime.fromisoformat(last["checked_at"])).total_seconds())
    return lag


def replication_metric_families(last: dict[str, Any] | None, now: datetime) -> list[Metric]:
    """orc_litestream_up and orc_litestream_replica_lag_seconds (absent before a first check)."""
    # Imported here: the job worker records checks but never renders metrics (about 2 MiB).
    from prometheus_client.core import GaugeMetricFamily

    up = GaugeMetricFamily("orc_litestream_up", "1 when Litestream is running, else 0")
    lag = GaugeMetricFamily(
        "orc_litestream_replica_lag_seconds", "Seconds the Litestream replica is behind orc.db"
    )
    if last is not None:
        up.add_metric([], 1.0 if last.get("up") else 0.0)
        lag.add_metric([], round(current_lag(last, now), 1))
    return [up, lag]
