"""Cron expressions for the backup schedule, evaluated with Huey's own ``crontab``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

# How far back the catch-up search looks for a missed firing (bounds the work per check).
MAX_LOOKBACK = timedelta(days=62)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed five-field cron expression (UTC; day and weekday must both match, as in Huey)."""

    expression: str
    matches: Callable[[datetime], bool]

    def latest_at_or_before(self, now: datetime) -> datetime | None:
        """The newest minute at or before ``now`` that the schedule fires in."""
        minute = now.replace(second=0, microsecond=0)
        oldest = minute - MAX_LOOKBACK
        while minute >= oldest:
            if self.matches(minute):
                return minute
            minute -= timedelta(minutes=1)
        return None

    def interval(self, now: datetime) -> timedelta | None:
        """Time between the two newest firings (how often backups are due)."""
        last = self.latest_at_or_before(now)
        if last is None:
            return None
        before = self.latest_at_or_before(last - timedelta(minutes=1))
        return None if before is None else last - before


def parse_cron(text: str) -> CronSchedule:
    """Parse ``minute hour day month weekday``; ValueError names what is wrong."""
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"{text!r} has {len(fields)} fields, a cron expression has 5")
    # Imported here: the API process needs Huey only when it reports on the schedule.
    from huey import crontab

    try:
        test = crontab(*fields, strict=True)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    # Huey's test takes naive datetimes; strip the zone after converting to UTC.
    return CronSchedule(" ".join(fields), lambda dt: bool(test(dt.replace(tzinfo=None))))
