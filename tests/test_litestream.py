"""Litestream, real binary: replicate orc.db to a file replica and to a local S3 (moto_server),
restore on boot into a new path, and see a stalled replication in status, metrics and readiness."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orc.replication.litestream import litestream_binary, litestream_env
from tests.backup_support import orc_ok
from tests.support import base_env, moto_s3_server, run_orc

ROWS = 300


def _config(path: Path, db: Path, replica: dict[str, object], sock: Path | None) -> Path:
    lines = []
    if sock is not None:
        lines += ["socket:", "  enabled: true", f"  path: {sock}"]
    lines += ["dbs:", f"  - path: {db}", "    replica:"]
    lines += [f"      {key}: {value}" for key, value in replica.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class Litestream:
    """`litestream replicate` in its own session; stopped by its pid."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [litestream_binary(), "replicate", "-config", str(config)],
                env=litestream_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def litestreams() -> Iterator[list[Litestream]]:
    started: list[Litestream] = []
    yield started
    for item in started:
        item.stop()


def _write_rows(db: Path, start: int, count: int) -> None:
    conn = sqlite3.connect(db, timeout=5)
    conn.execute("PRAGMA journal_mode=WAL")
    for i in range(start, start + count):
        conn.execute(
            "INSERT INTO server_state (key, value, updated_at) VALUES (?, ?, "
            "'2026-01-01 00:00:00+00:00')",
            (f"row-{i:05d}", os.urandom(16).hex()),
        )
        if i % 50 == 0:
            conn.commit()
    conn.commit()
    conn.close()


def _rows(db: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT key, value FROM server_state WHERE key LIKE 'row-%' ORDER BY key"
        ).fetchall()
    finally:
        conn.close()


def _status(env: dict[str, str]) -> dict[str, object]:
    result = run_orc(["replication", "status", "--json"], env)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def _wait_caught_up(env: dict[str, str], timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    status: dict[str, object] = {}
    while time.monotonic() < deadline:
        status = _status(env)
        if (
            status["up"]
            and status["lag_seconds"] == 0
            and status["replica_txid"]
            and (status["replica_txid"] == status["local_txid"])
        ):
            return status
        time.sleep(0.5)
    raise AssertionError(f"replication did not catch up: {status}")


def _replicate_restore_compare(
    tmp_path: Path, replica: dict[str, object], litestreams: list[Litestream]
) -> None:
    env = base_env(tmp_path)
    db = Path(env["ORC_HOME"]) / "orc.db"
    orc_ok(["new", "replicated task"], env)
    config = _config(tmp_path / "litestream.yml", db, replica, tmp_path / "ls.sock")
    env.update(ORC_LITESTREAM_ENABLED="true", ORC_LITESTREAM_CONFIG=str(config))
    litestreams.append(Litestream(config, tmp_path / "litestream.log"))
    _write_rows(db, 0, ROWS)
    _wait_caught_up(env)
    litestreams[-1].stop()  # the writer and Litestream stop; the replica is all there is
    expected = _rows(db)
    assert len(expected) == ROWS

    # A new machine: empty ORC_HOME, the same replica, orc.db at a new path.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    env2 = base_env(fresh)
    new_db = Path(env2["ORC_HOME"]) / "orc.db"
    config2 = _config(fresh / "litestream.yml", new_db, replica, None)
    env2.update(ORC_LITESTREAM_ENABLED="true", ORC_LITESTREAM_CONFIG=str(config2))
    out = orc_ok(["replication", "restore", "--if-missing"], env2)
    assert "restored" in out and "integrity ok" in out
    assert _rows(new_db) == expected
    assert "exists; nothing to restore" in orc_ok(["replication", "restore", "--if-missing"], env2)
    assert "replicated task" in orc_ok(["list"], env2)


def test_file_replica_restores_into_a_new_path_with_equal_rows(tmp_path, litestreams):
    replica = {"type": "file", "path": str(tmp_path / "replica"), "sync-interval": "1s"}
    _replicate_restore_compare(tmp_path, replica, litestreams)


@pytest.fixture
def moto_s3(tmp_path: Path) -> Iterator[str]:
    with moto_s3_server(tmp_path / "moto.log") as port:
        yield f"http://127.0.0.1:{port}"


@pytest.mark.slow
def test_s3_replica_on_a_local_s3_server_restores_with_equal_rows(
    tmp_path, litestreams, moto_s3, monkeypatch
):
    monkeypatch.setenv("LITESTREAM_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("LITESTREAM_SECRET_ACCESS_KEY", "test")
    replica = {
        "type": "s3",
        "bucket": "orc-backups",
        "path": "orc.db",
        "region": "us-east-1",
        "endpoint": moto_s3,
        "force-path-style": "true",
        "sync-interval": "1s",
    }
    _replicate_restore_compare(tmp_path, replica, litestreams)


def test_restore_if_missing_without_a_replica_or_when_off_exits_0(tmp_path):
    env = base_env(tmp_path)
    off = run_orc(["replication", "restore", "--if-missing"], env)
    assert off.returncode == 0 and "replication is off" in off.stdout
    db = Path(env["ORC_HOME"]) / "orc.db"
    config = _config(tmp_path / "ls.yml", db, {"type": "file", "path": str(tmp_path / "r")}, None)
    env.update(ORC_LITESTREAM_ENABLED="true", ORC_LITESTREAM_CONFIG=str(config))
    none = run_orc(["replication", "restore", "--if-missing"], env)
    assert none.returncode == 0, none.stderr
    assert "no replica" in none.stdout and not db.exists()
    env["ORC_LITESTREAM_CONFIG"] = str(tmp_path / "missing.yml")
    broken = run_orc(["replication", "restore", "--if-missing"], env)
    assert broken.returncode == 2
    assert broken.stderr.startswith("orc: error: cannot read the Litestream config")


@pytest.mark.slow(seconds=90)  # waits for the worker's next minute check
@pytest.mark.timeout(300)
def test_stalled_replication_shows_in_status_metrics_readiness_and_an_event(
    tmp_path, litestreams, server_factory
):
    env = base_env(tmp_path)
    db = Path(env["ORC_HOME"]) / "orc.db"
    orc_ok(["new", "x"], env)
    replica = {"type": "file", "path": str(tmp_path / "replica"), "sync-interval": "1s"}
    config = _config(tmp_path / "litestream.yml", db, replica, tmp_path / "ls.sock")
    env.update(ORC_LITESTREAM_ENABLED="true", ORC_LITESTREAM_CONFIG=str(config))
    litestreams.append(Litestream(config, tmp_path / "litestream.log"))
    _write_rows(db, 0, 10)
    _wait_caught_up(env)
    server = server_factory(env).start()

    def metric(name: str) -> float | None:
        for line in server.get("/api/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    deadline = time.monotonic() + 90  # generous: a loaded machine starts the worker slowly
    while metric("orc_litestream_up") is None:  # the worker checks at its start
        assert time.monotonic() < deadline, server.logs()
        time.sleep(0.5)
    assert metric("orc_litestream_up") == 1.0
    assert server.get("/api/health/ready").json()["checks"]["replication"] == "ok"

    litestreams[-1].stop()  # replication stalls; writes go on
    # Replica timestamps have whole seconds, so the check sees changes 2 s newer than the replica.
    time.sleep(3)
    _write_rows(db, 10, 10)
    time.sleep(1)
    status = _status(env)
    assert status["up"] is False and str(status["status"]).startswith("down")
    first_lag = float(status["lag_seconds"])  # type: ignore[arg-type]
    assert first_lag > 0
    time.sleep(2)
    assert float(_status(env)["lag_seconds"]) > first_lag  # type: ignore[arg-type]
    assert run_orc(["replication", "status"], env).returncode == 1

    deadline = time.monotonic() + 120  # the worker's next check (every minute)
    while metric("orc_litestream_up") != 0.0:
        assert time.monotonic() < deadline, server.logs()[-3000:]
        time.sleep(1)
    lag1 = metric("orc_litestream_replica_lag_seconds")
    time.sleep(2.5)
    lag2 = metric("orc_litestream_replica_lag_seconds")
    assert lag1 is not None and lag2 is not None and lag2 > lag1 > 0
    ready = server.get("/api/health/ready")
    assert ready.status_code == 200  # a warning, not a 503
    assert ready.json()["checks"]["replication"].startswith("down")
    events = server.get("/api/events", params={"since": 0}).json()
    kinds = [e["event_type"] for e in events["events"]]
    assert "replication" in kinds


def test_the_shipped_litestream_config_is_valid_and_replicates_orc_db():
    from orc.replication.litestream import load_litestream_db

    config = Path(__file__).resolve().parent.parent / "deploy" / "litestream.yml"
    db = load_litestream_db(config, Path("/home/orc/.orc/orc.db"))
    assert db.replica_types == ["s3"] and db.socket_path is not None
    result = subprocess.run(
        [litestream_binary(), "databases", "-config", str(config)],
        env=litestream_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "/home/orc/.orc/orc.db" in result.stdout and "s3" in result.stdout
