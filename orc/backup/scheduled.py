"""The scheduled backup: once per firing of ORC_BACKUP_SCHEDULE, however often it is checked.

The worker checks every minute (Huey may run that check twice after a restart, and several
servers on one PostgreSQL all check). The newest firing at or before now is the "slot"; the
slot last served is kept in the database, read again under the backup lock, so each slot gets
one backup. The first check ever only records the current slot (a new installation takes its
first scheduled backup at the next firing, not at start-up); a firing missed while no worker
ran is caught up once.
"""

from __future__ import annotations

from datetime import datetime

from orc.backup.exclusive import BackupBusy, backup_lock
from orc.backup.manifest import Manifest
from orc.backup.service import backup_and_record
from orc.backup.state import SCHEDULED_SLOT, read_state, set_scheduled_slot
from orc.config import Settings
from orc.config.cron import parse_cron


async def _served() -> datetime | None:
    text = await read_state(SCHEDULED_SLOT)
    return datetime.fromisoformat(text) if text else None


async def run_scheduled_backup(settings: Settings, now: datetime) -> Manifest | None:
    """Take the scheduled backup if its slot has not been served; prune after it.

    Needs the database open (the slot and the outcome are kept there).
    """
    if not settings.backup_enabled:
        return None
    slot = parse_cron(settings.backup_schedule).latest_at_or_before(now)
    if slot is None:
        return None
    served = await _served()
    if served is None:
        await set_scheduled_slot(slot)
        return None
    if served >= slot:
        return None
    try:
        async with backup_lock(settings.backup_dir, settings.database_url):
            served = await _served()  # another process may have served it while we waited
            if served is not None and served >= slot:
                return None
            try:
                return await backup_and_record(settings, "scheduled", prune=True, locked=True)
            finally:
                # A failed slot is not retried every minute: the failure is counted and
                # shown; the next firing tries again.
                await set_scheduled_slot(slot)
    except BackupBusy:
        return None
