"""A real `orc worker` with a per-minute schedule takes backups and prunes by retention."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from orc.backup.manifest import list_backups
from tests.backup_support import backup_dir, backups, orc_ok, query, synthetic_backup
from tests.support import ORC


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert proc.poll() is None, f"orc worker exited:\n{log.read_text()}"
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen in {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow(seconds=90)  # waits for the next minute
@pytest.mark.timeout(300)
def test_worker_takes_scheduled_backups_every_minute_and_prunes_by_retention(
    migrated, sqlite_env, tmp_path: Path
):
    env = dict(sqlite_env)
    env.update(
        ORC_BACKUP_SCHEDULE="* * * * *",
        ORC_BACKUP_KEEP_DAILY="2",
        ORC_BACKUP_KEEP_WEEKLY="0",
        ORC_BACKUP_KEEP_MONTHLY="0",
    )
    orc_ok(["new", "scheduled data"], env)
    url = f"sqlite://{Path(env['ORC_HOME']) / 'orc.db'}"
    # A slot served long ago: the worker's first check (at start) catches up at once.
    import sqlite3

    conn = sqlite3.connect(Path(env["ORC_HOME"]) / "orc.db")
    conn.execute(
        "INSERT INTO server_state (key, value, updated_at) VALUES "
        "('backup.scheduled_slot', '2026-01-01T00:00:00+00:00', '2026-01-01 00:00:00+00:00')"
    )
    conn.commit()
    conn.close()
    folder = backup_dir(env)
    folder.mkdir(parents=True)
    old = [
        synthetic_backup(folder, day, "scheduled")
        for day in ("2026-01-01", "2026-01-02", "2026-01-03")
    ]

    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*ORC, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:

        def fresh() -> list[str]:
            # Read in this process (what `orc backup list` reads): polling through the CLI
            # cost a process start every half second for a minute.
            return [m.name for m in list_backups(folder) if m.name not in old]

        def pruned() -> bool:  # retention runs just after the backup
            return not {old[0], old[1]} & {m.name for m in list_backups(folder)}

        first = _wait_for(fresh, 60, "the first scheduled backup", proc, log)
        _wait_for(pruned, 30, "retention after the first backup", proc, log)
        # Retention (2 days) after it: today's backup and 2026-01-03 stay.
        assert [b["name"] for b in backups(env)] == [old[2], first[0]]
        second = _wait_for(
            lambda: [n for n in fresh() if n != first[0]], 150, "the second backup", proc, log
        )
        _wait_for(lambda: first[0] not in fresh(), 30, "retention after the second", proc, log)
        # Two today: the newest of the day is kept.
        names = [b["name"] for b in backups(env)]
        assert names == [old[2], second[0]], names
        assert all(b["reason"] == "scheduled" for b in backups(env))
        failures = query(url, "SELECT value FROM server_state WHERE key = 'backup.failures_total'")
        assert failures == []
        events = query(url, "SELECT data FROM event WHERE event_type = 'backup'")
        assert len(events) == 2 and all('"status":"ok"' in e[0] for e in events)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
