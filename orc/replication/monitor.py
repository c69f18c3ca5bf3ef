"""The worker's replication check: ask Litestream how far the replica is behind, record it."""

from __future__ import annotations

import asyncio
from datetime import datetime

from orc.config import Settings
from orc.replication.litestream import (
    ReplicationError,
    ReplicationStatus,
    check_replication,
    load_litestream_db,
)
from orc.replication.status import record_replication


def _check(settings: Settings, now: datetime) -> ReplicationStatus:
    try:
        db = load_litestream_db(settings.litestream_config, settings.database.sqlite_path)
        return check_replication(db, now)
    except ReplicationError as exc:
        return ReplicationStatus(
            status=f"error: {exc}", up=False, lag_seconds=0.0, checked_at=now.isoformat()
        )


async def monitor_replication(
    settings: Settings, now: datetime
) -> tuple[ReplicationStatus, bool] | None:
    """Check and record replication; None when it is off. True with a status that changed."""
    if not settings.litestream_enabled or not settings.database.is_sqlite:
        return None
    # Litestream's commands are subprocesses that may take a while: off the event loop.
    status = await asyncio.to_thread(_check, settings, now)
    return status, await record_replication(status)
