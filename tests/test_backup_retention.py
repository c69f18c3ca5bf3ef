"""Retention on synthetic dates, cron parsing, and the once-per-firing scheduled backup."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from orc.backup.retention import Policy, backups_to_keep
from orc.config import load_settings
from orc.config.cron import parse_cron
from tests.backup_support import orc_ok, synthetic_backup
from tests.support import run_orc


def _daily(first: date, last: date, reason: str = "scheduled") -> list[tuple[str, str, datetime]]:
    out = []
    day = first
    while day <= last:
        when = datetime(day.year, day.month, day.day, 3, tzinfo=UTC)
        out.append((day.isoformat(), reason, when))
        day += timedelta(days=1)
    return out


def test_retention_keeps_the_newest_of_each_day_week_and_month():
    backups = _daily(date(2026, 1, 1), date(2026, 4, 10))
    kept = backups_to_keep(backups, Policy(daily=7, weekly=4, monthly=6, capped=3))
    days = {f"2026-04-{d:02d}" for d in range(4, 11)}
    weeks = {"2026-04-05", "2026-03-29", "2026-03-22"}  # with 04-10: 4 ISO weeks
    months = {"2026-03-31", "2026-02-28", "2026-01-31"}  # with 04-10: 4 months exist
    assert kept == days | weeks | months


def test_retention_counts_days_that_have_backups_not_calendar_days():
    backups = [("a", "manual", datetime(2026, 1, 1, tzinfo=UTC))]
    backups += [("b", "scheduled", datetime(2026, 3, 1, tzinfo=UTC))]
    backups += [("c", "scheduled", datetime(2026, 3, 1, 5, tzinfo=UTC))]
    assert backups_to_keep(backups, Policy(2, 0, 0, 1)) == {"a", "c"}


def test_pre_migration_and_pre_restore_are_capped_separately_and_the_newest_is_always_kept():
    backups = _daily(date(2026, 1, 1), date(2026, 1, 5), "pre-migration")
    backups += _daily(date(2026, 2, 1), date(2026, 2, 3), "pre-restore")
    backups += _daily(date(2026, 3, 1), date(2026, 3, 2), "scheduled")
    kept = backups_to_keep(backups, Policy(daily=0, weekly=0, monthly=0, capped=2))
    assert kept == {"2026-01-04", "2026-01-05", "2026-02-02", "2026-02-03", "2026-03-02"}


def test_cron_finds_the_latest_firing_and_the_interval():
    daily = parse_cron("0 3 * * *")
    now = datetime(2026, 5, 6, 2, 59, 30, tzinfo=UTC)
    assert daily.latest_at_or_before(now) == datetime(2026, 5, 5, 3, 0, tzinfo=UTC)
    assert daily.interval(now) == timedelta(days=1)
    assert parse_cron("*/15 * * * *").interval(now) == timedelta(minutes=15)


@pytest.mark.parametrize("bad", ["0 3 * *", "61 * * * *", "x * * * *", "0 25 * * *"])
def test_a_bad_schedule_is_a_one_line_error_naming_the_variable(bad, sqlite_env):
    sqlite_env["ORC_BACKUP_SCHEDULE"] = bad
    result = run_orc(["backup", "list"], sqlite_env)
    assert result.returncode == 2
    assert result.stderr.startswith("orc: error: ORC_BACKUP_SCHEDULE=")
    assert len(result.stderr.strip().splitlines()) == 1


def test_scheduled_backup_runs_once_per_firing_even_when_checked_twice(
    orc_env, database_url, tmp_path: Path
):
    """Huey may run a periodic check twice after a restart; each firing gets one backup."""
    from orc.backup.manifest import list_backups
    from orc.backup.scheduled import run_scheduled_backup
    from workers.job_runtime import AsyncRuntime

    orc_ok(["new", "x"], orc_env)
    settings = load_settings(orc_env, cwd=tmp_path)
    runtime = AsyncRuntime(database_url)
    runtime.start()
    try:

        def check(settings, now):
            return runtime.run(run_scheduled_backup(settings, now), timeout=60)

        start = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)
        assert check(settings, start) is None  # first check: baseline
        assert check(settings, start) is None
        firing = datetime(2026, 5, 6, 3, 0, 20, tzinfo=UTC)
        taken = check(settings, firing)
        assert taken is not None and taken.reason == "scheduled"
        assert check(settings, firing + timedelta(seconds=30)) is None
        assert check(settings, firing + timedelta(hours=5)) is None
        # Worker down for two days: one catch-up backup, not two.
        later = firing + timedelta(days=2, hours=1)
        second = check(settings, later)
        assert second is not None
        assert check(settings, later) is None
        # Both were taken today (real time), so retention keeps the newest of the day.
        assert [m.name for m in list_backups(settings.backup_dir)] == [second.name]
        disabled = settings.replace(backup_enabled=False)
        assert check(disabled, later + timedelta(days=1)) is None
    finally:
        runtime.close()


def test_prune_never_deletes_a_file_it_cannot_account_for(tmp_path: Path):
    """Files with a manifest it cannot read (e.g. from a newer orc), or with a name it never
    makes, stay; only a file of its own naming without any manifest is an unfinished backup."""
    import json

    from orc.backup.manifest import list_backups, manifest_path
    from orc.backup.retention import prune_backups

    kept = synthetic_backup(tmp_path, "2026-11-20", "scheduled")
    newer = synthetic_backup(tmp_path, "2026-11-21", "scheduled")
    data = json.loads(manifest_path(tmp_path, newer).read_text())
    data["added_by_a_newer_orc"] = {"x": 1}
    manifest_path(tmp_path, newer).write_text(json.dumps(data))
    unreadable = synthetic_backup(tmp_path, "2026-11-22", "scheduled")
    manifest_path(tmp_path, unreadable).write_text("{not json")
    (tmp_path / "orc-keep.db").write_bytes(b"the user's own copy")
    unfinished = "orc-2026-11-23T03-00-00.000Z-scheduled.db"
    (tmp_path / unfinished).write_bytes(b"half")

    prune_backups(tmp_path, Policy(daily=7, weekly=4, monthly=6, capped=3))

    assert {m.name for m in list_backups(tmp_path)} == {kept, newer}  # unknown keys ignored
    assert (tmp_path / unreadable).exists() and (tmp_path / "orc-keep.db").exists()
    assert not (tmp_path / unfinished).exists()


def test_restore_latest_skips_the_safety_copy_of_a_previous_restore(tmp_path: Path):
    from orc.backup.manifest import find_backup

    good = synthetic_backup(tmp_path, "2026-11-20", "scheduled")
    synthetic_backup(tmp_path, "2026-11-21", "pre-restore")
    assert find_backup(tmp_path, "latest", "sqlite").name == good
