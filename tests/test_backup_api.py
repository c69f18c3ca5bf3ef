"""Backups over HTTP and their visible outcomes: /api/backups, metrics, readiness, events."""

from __future__ import annotations

import fcntl
import time
from datetime import UTC, datetime, timedelta

from orc.backup.reporting import backup_check
from tests.backup_support import backup_dir, orc_ok
from tests.support import run_orc


def test_post_queues_a_backup_that_get_metrics_readiness_and_events_then_show(
    migrated, orc_env, server_factory
):
    orc_ok(["new", "x"], orc_env)
    server = server_factory(orc_env).start()
    before = server.get("/api/backups").json()
    assert before["backups"] == [] and before["status"] == "none: no backup yet"
    assert server.get("/api/health/ready").json()["checks"]["backup"] == "none: no backup yet"

    import httpx

    queued = httpx.post(server.base_url + "/api/backups", timeout=10)
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    deadline = time.monotonic() + 60
    # The backup is listed once its manifest is written; its outcome is recorded just after.
    while not (body := server.get("/api/backups").json())["backups"] or body["status"] != "ok":
        assert time.monotonic() < deadline, server.logs()[-3000:]
        time.sleep(0.3)
    (backup,) = body["backups"]
    assert backup["reason"] == "manual" and backup["verified_ok"] is True
    assert body["status"] == "ok" and body["last_success"]["name"] == backup["name"]

    metrics = server.get("/api/metrics").text
    assert f"orc_backup_last_size_bytes {float(backup['size'])}" in metrics
    assert "orc_backup_failures_total 0.0" in metrics
    assert "orc_backup_last_success_timestamp_seconds 1." in metrics
    ready = server.get("/api/health/ready").json()
    assert ready["checks"]["backup"] == "ok"
    assert ready["info"]["backup_last_success_age_seconds"] < 60
    events = server.get("/api/events", params={"since": 0}).json()["events"]
    backup_events = [e for e in events if e["event_type"] == "backup"]
    assert backup_events[-1]["data"]["name"] == backup["name"]
    assert backup_events[-1]["data"]["status"] == "ok"


def test_a_failed_backup_counts_in_metrics_and_readiness_warns_without_503(
    migrated, orc_env, app_factory, tmp_path
):
    orc_ok(["new", "x"], orc_env)
    orc_ok(["backup", "now"], orc_env)
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the backup directory should be")
    failing = dict(orc_env, ORC_BACKUP_DIR=str(blocked))
    result = run_orc(["backup", "now"], failing)
    assert result.returncode == 1 and result.stderr.startswith("orc: error: ")
    server = app_factory(orc_env)
    assert "orc_backup_failures_total 1.0" in server.get("/api/metrics").text
    ready = server.get("/api/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["backup"].startswith("warning: the last backup failed")


def test_orc_backup_now_records_its_success_where_every_process_sees_it(
    migrated, orc_env, app_factory
):
    """The command opens the database while its copy runs, and records the outcome there."""
    orc_ok(["new", "x"], orc_env)
    name = orc_ok(["backup", "now", "-q"], orc_env).strip()
    server = app_factory(orc_env)
    body = server.get("/api/backups").json()
    assert body["status"] == "ok" and body["last_success"]["name"] == name
    events = server.get("/api/events", params={"since": 0}).json()["events"]
    assert [e["data"]["name"] for e in events if e["event_type"] == "backup"] == [name]


def test_two_backups_never_run_at_once(migrated, orc_env):
    orc_ok(["new", "x"], orc_env)
    folder = backup_dir(orc_env)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".backup.lock").open("a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        handle.write("pid 4242")
        handle.flush()
        result = run_orc(["backup", "now"], orc_env)
    assert result.returncode == 1
    assert "another backup or restore is running (pid 4242)" in result.stderr
    assert run_orc(["backup", "now"], orc_env).returncode == 0


def test_readiness_warns_when_the_last_backup_is_older_than_twice_the_schedule():
    now = datetime(2026, 5, 6, 12, 0, tzinfo=UTC)

    def figures(age: timedelta) -> dict:
        return {"last_success": {"finished_at": (now - age).isoformat()}, "last_failure": None}

    assert backup_check(figures(timedelta(hours=30)), "0 3 * * *", True, now)[0] == "ok"
    status, age = backup_check(figures(timedelta(hours=49)), "0 3 * * *", True, now)
    assert status.startswith("warning: last backup") and age == 49 * 3600
    assert backup_check(figures(timedelta(hours=3)), "0 * * * *", True, now)[0].startswith(
        "warning"
    )
    assert backup_check({}, "0 3 * * *", False, now)[0].startswith("disabled")


def test_servers_sharing_a_postgres_database_never_back_up_together(postgres_database, tmp_path):
    """The advisory lock spans machines: another server's backup blocks ours, whatever the disk."""
    import asyncio

    import asyncpg

    from orc.backup.exclusive import PG_BACKUP_LOCK_KEY
    from orc.db.url import DatabaseUrl
    from tests.support import base_env

    env = base_env(tmp_path)
    env["DATABASE_URL"] = postgres_database
    orc_ok(["new", "x"], env)

    async def hold_and_try() -> tuple[int, str]:
        conn = await asyncpg.connect(**DatabaseUrl(postgres_database).asyncpg_connect_args())
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", PG_BACKUP_LOCK_KEY)
            result = await asyncio.to_thread(run_orc, ["backup", "now"], env)
            return result.returncode, result.stderr
        finally:
            await conn.close()

    code, stderr = asyncio.run(hold_and_try())
    assert code == 1 and "another orc server is taking a backup of this database" in stderr
    assert run_orc(["backup", "now"], env).returncode == 0


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_without_one(migrated, sqlite_env):
    import os
    import pty
    import subprocess

    from tests.support import ORC

    orc_ok(["new", "x"], sqlite_env)
    plain = run_orc(["backup", "now"], sqlite_env)
    assert "backup: copying orc.db" in plain.stderr and "backup: saving" in plain.stderr
    assert "\x1b[" not in plain.stderr  # no terminal codes in logs

    leader, follower = pty.openpty()
    env = dict(sqlite_env, COLUMNS="100", TERM="xterm")
    proc = subprocess.Popen(
        [*ORC, "backup", "now"], env=env, stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert proc.wait(60) == 0
    os.close(leader)
    text = output.decode(errors="replace")
    assert "━" in text and "checking integrity" in text  # rich's bar
    assert "backup: copying" not in text
