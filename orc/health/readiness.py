"""Readiness checks: what a load balancer needs to know before it sends traffic."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orc.config import Settings
from orc.db import PING_TIMEOUT_SECONDS, describe_error
from orc.db.models import WorkerHeartbeat
from orc.db.schema import applied_migrations, known_migrations

CRITICAL_CHECKS = ("database", "migrations")
# The disk check fails readiness only at this level; its warnings are information.
DISK_CRITICAL = "critical"
MIB = 1024 * 1024
# The heartbeat job runs every minute; allow for one missed beat and a slow consumer.
HEARTBEAT_STALE_SECONDS = 150


@dataclass
class Readiness:
    """The checks (``"ok"`` or a reason) and figures behind them."""

    checks: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        if self.checks.get("disk", "").startswith(DISK_CRITICAL):
            return False
        return all(self.checks.get(name) == "ok" for name in CRITICAL_CHECKS)


def migrations_check(applied: set[str], known: list[str]) -> str:
    """``ok`` when the database's schema is exactly what this orc ships."""
    unknown = sorted(applied - set(known))
    if unknown:
        return "error: database has migrations this orc does not know: " + ", ".join(unknown)
    pending = [name for name in known if name not in applied]
    if pending:
        return "pending: " + ", ".join(pending) + " (run orc migrate)"
    return "ok"


def disk_check(home: Path, warn_mb: int, critical_mb: int) -> tuple[str, int | None]:
    """Free space of ORC_HOME: critical (not ready) below ``critical_mb``, a warning below
    ``warn_mb`` (writes still succeed, but someone should look)."""
    try:
        free = shutil.disk_usage(home).free
    except OSError as exc:
        return f"warning: cannot read disk usage ({exc.strerror})", None
    free_mb = free // MIB
    if free < critical_mb * MIB:
        return (
            f"{DISK_CRITICAL}: {free_mb} MiB free, below ORC_DISK_CRITICAL_MB={critical_mb}; "
            "free space on the volume that holds ORC_HOME"
        ), free
    if free < warn_mb * MIB:
        return f"warning: {free_mb} MiB free, below ORC_DISK_WARN_MB={warn_mb}", free
    return "ok", free


async def worker_check(now: datetime) -> tuple[str, float | None]:
    """Age of the newest worker heartbeat (information, not critical)."""
    latest = await WorkerHeartbeat.all().order_by("-beat_at").first()
    if latest is None:
        return "none: no worker heartbeat recorded yet", None
    age = (now - latest.beat_at).total_seconds()
    if age > HEARTBEAT_STALE_SECONDS:
        return f"stale: last heartbeat {int(age)}s ago", age
    return "ok", age


async def check_readiness(settings: Settings) -> Readiness:
    """Run every check; database errors are reported, never raised."""
    result = Readiness()
    try:
        applied = await asyncio.wait_for(applied_migrations(), PING_TIMEOUT_SECONDS)
    except Exception as exc:
        result.checks["database"] = "error: " + describe_error(exc)
        result.checks["migrations"] = "unknown: database unreachable"
    else:
        result.checks["database"] = "ok"
        result.checks["migrations"] = migrations_check(applied, known_migrations())
    result.checks["disk"], result.info["disk_free_bytes"] = disk_check(
        settings.home, settings.disk_warn_mb, settings.disk_critical_mb
    )
    if result.checks["database"] == "ok":
        try:
            status, age = await asyncio.wait_for(
                worker_check(datetime.now(UTC)), PING_TIMEOUT_SECONDS
            )
        except Exception as exc:
            status, age = "unknown: " + describe_error(exc), None
        result.checks["worker"] = status
        result.info["worker_heartbeat_age_seconds"] = None if age is None else round(age, 1)
    else:
        result.checks["worker"] = "unknown: database unreachable"
    result.checks["agent"] = (
        "ok"
        if settings.anthropic_api_key or settings.claude_code_oauth_token
        else "not configured: set ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN to run tasks"
    )
    if result.checks["database"] == "ok":
        await _backup_and_replication(result, settings)
    return result


async def _backup_and_replication(result: Readiness, settings: Settings) -> None:
    """The last backup's age and replication lag: information (warnings), never a 503."""
    from orc.backup.reporting import backup_check
    from orc.backup.state import backup_figures
    from orc.replication.status import current_lag, last_replication

    now = datetime.now(UTC)
    figures: dict[str, Any] = {}
    try:
        figures = await asyncio.wait_for(backup_figures(), PING_TIMEOUT_SECONDS)
        status, age = backup_check(figures, settings.backup_schedule, settings.backup_enabled, now)
    except Exception as exc:
        status, age = "unknown: " + describe_error(exc), None
    result.checks["backup"] = status
    result.info["backup_last_success_age_seconds"] = None if age is None else round(age, 1)
    last_success = figures.get("last_success") or {}
    if last_success:
        result.info["backup_last_size_bytes"] = last_success.get("size")
    if not settings.litestream_enabled:
        return
    try:
        last = await asyncio.wait_for(last_replication(), PING_TIMEOUT_SECONDS)
    except Exception as exc:
        result.checks["replication"] = "unknown: " + describe_error(exc)
        return
    if last is None:
        result.checks["replication"] = "unknown: not checked yet (the worker checks every minute)"
        return
    lag = current_lag(last, now)
    result.checks["replication"] = str(last.get("status", "unknown"))
    result.info["replication_lag_seconds"] = round(lag, 1)
    result.info["replication_up"] = bool(last.get("up"))
