"""The job worker: restarted by `orc serve` when it dies, optional, and runnable on its own."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import psutil

from orc.db.url import DatabaseUrl
from orc.usage.rollups import WATERMARK_KEY
from tests.support import LOOPBACK, ORC, OrcServer, base_env, run_orc
from workers.usage_jobs import FOLD_EVERY_SECONDS

T = TypeVar("T")
EXIT_TIMEOUT = 10.0


def poll(check: Callable[[], T | None], timeout: float, what: str, logs: Callable[[], str]) -> T:
    """Call ``check`` until it returns something other than None; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s\n{logs()}")
        time.sleep(0.05)


def children(pid: int) -> list[psutil.Process]:
    """The live direct children of ``pid``."""
    try:
        procs = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []
    live = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE:
                live.append(proc)
    return live


def cmd_name(proc: psutil.Process) -> str:
    """The orc subcommand a child runs (``worker`` or ``_api``), or ``""``."""
    try:
        cmdline = proc.cmdline()
    except psutil.Error:
        return ""
    return cmdline[-1] if cmdline else ""


def worker_child(server: OrcServer) -> psutil.Process | None:
    workers = [p for p in children(server.pid) if cmd_name(p) == "worker"]
    assert len(workers) <= 1, workers
    return workers[0] if workers else None


def ready_body(server: OrcServer) -> dict[str, Any]:
    response = server.get("/api/health/ready")
    assert response.status_code == 200, response.text
    return response.json()


def heartbeat_pids(env: dict[str, str]) -> set[int]:
    """PIDs of the workers that recorded a heartbeat, read straight from the database."""
    url = env.get("DATABASE_URL")
    if url is None or url.startswith("sqlite"):
        path = str(DatabaseUrl(url).sqlite_path) if url else str(Path(env["ORC_HOME"]) / "orc.db")
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
            return {row[0] for row in db.execute("SELECT pid FROM worker_heartbeat")}

    async def query() -> set[int]:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            return {row["pid"] for row in await conn.fetch("SELECT pid FROM worker_heartbeat")}
        finally:
            await conn.close()

    return asyncio.run(query())


def fold_progress(env: dict[str, str]) -> tuple[int, int]:
    """(the usage watermark: the last event folded, the newest usage event) on SQLite."""
    path = Path(env["ORC_HOME"]) / "orc.db"
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
        [[watermark]] = db.execute(
            "SELECT COALESCE(MAX(value), '0') FROM server_state WHERE key = ?",
            (WATERMARK_KEY,),
        ).fetchall()
        [[newest]] = db.execute("SELECT COALESCE(MAX(id), 0) FROM usage_event").fetchall()
    return int(watermark), int(newest)


def test_killed_worker_is_restarted_and_beats_again(server_factory, migrated, orc_env):
    server = server_factory(orc_env).start()
    api = [p for p in children(server.pid) if cmd_name(p) == "_api"]
    assert len(api) == 1, children(server.pid)
    old = poll(lambda: worker_child(server), 10, "worker process", server.logs)
    poll(
        lambda: True if old.pid in heartbeat_pids(orc_env) else None,
        15,
        "first heartbeat",
        server.logs,
    )
    assert ready_body(server)["checks"]["worker"] == "ok"

    killed_at = time.monotonic()
    old.send_signal(signal.SIGKILL)

    def restarted() -> psutil.Process | None:
        new = worker_child(server)
        return new if new is not None and new.pid != old.pid else None

    new = poll(restarted, 10, "a new worker process", server.logs)

    def fresh_heartbeat() -> dict[str, Any] | None:
        asked_at = time.monotonic()
        body = ready_body(server)
        age = body["info"]["worker_heartbeat_age_seconds"]
        # The age is rounded to 0.1 s: younger than the kill means written after it.
        if (
            body["checks"]["worker"] == "ok"
            and age is not None
            and age + 0.1 < asked_at - killed_at
        ):
            return body
        return None

    body = poll(
        fresh_heartbeat, 10 - (time.monotonic() - killed_at), "fresh heartbeat", server.logs
    )
    assert body["status"] == "ok"
    assert new.pid in heartbeat_pids(orc_env)
    assert not old.is_running() or old.status() == psutil.STATUS_ZOMBIE
    # Only the worker was replaced.
    assert [p.pid for p in children(server.pid) if cmd_name(p) == "_api"] == [api[0].pid]
    assert any("the job worker was restarted" in r.get("message", "") for r in server.log_records())

    code, _ = server.terminate()
    assert code == 0, server.logs()


def test_no_worker_runs_no_worker(server_factory, migrated, sqlite_env):
    server = server_factory(sqlite_env, "--no-worker").start()
    body = ready_body(server)
    assert body["status"] == "ok"
    assert body["checks"]["worker"].startswith("none"), body
    assert body["info"]["worker_heartbeat_age_seconds"] is None
    assert [cmd_name(p) for p in children(server.pid)] == ["_api"]
    code, _ = server.terminate()
    assert code == 0, server.logs()


def test_standalone_worker_beats_and_stops_gracefully_on_sigint(server_factory, sqlite_env):
    migrated = run_orc(["migrate"], sqlite_env)
    assert migrated.returncode == 0, migrated.stderr
    log_path = Path(sqlite_env["HOME"]) / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [*ORC, "worker"],
            env=sqlite_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def logs() -> str:
        return log_path.read_text(errors="replace")

    try:

        def beat() -> bool | None:
            assert worker.poll() is None, f"the worker exited early:\n{logs()}"
            return True if worker.pid in heartbeat_pids(sqlite_env) else None

        poll(beat, 15, "heartbeat of the standalone worker", logs)

        # An API without its own worker, on the same ORC_HOME, sees that heartbeat.
        server = server_factory(sqlite_env, "--no-worker").start()
        body = ready_body(server)
        assert body["checks"]["worker"] == "ok", body
        assert body["info"]["worker_heartbeat_age_seconds"] < 60

        # Usage recorded through that API is folded by the worker within seconds (every
        # FOLD_EVERY_SECONDS), twice in a row: not at the next minute, as a once-a-minute job
        # would. The reports' unfolded tail stays short.
        created = LOOPBACK.post(server.base_url + "/api/tasks", json={"title": "fold me"})
        assert created.status_code == 201, created.text
        usage_url = f"{server.base_url}/api/tasks/{created.json()['id']}/usage"
        for batch in range(2):
            events = [{"model": "claude-sonnet-4-5", "input_tokens": 10 + i} for i in range(30)]
            recorded = LOOPBACK.post(usage_url, json={"events": events})
            assert recorded.status_code == 201, recorded.text
            newest = fold_progress(sqlite_env)[1]
            assert newest == 30 * (batch + 1)
            poll(
                lambda: True if fold_progress(sqlite_env)[0] == newest else None,
                FOLD_EVERY_SECONDS + 10,
                f"batch {batch + 1} to be folded",
                logs,
            )

        worker.send_signal(signal.SIGINT)
        try:
            code = worker.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the worker ignored SIGINT:\n{logs()}") from None
        assert code == 0, logs()
        assert "Shutting down gracefully" in logs()
        assert "Consumer exiting" in logs()
        code, _ = server.terminate()
        assert code == 0, server.logs()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_importing_the_worker_reads_no_settings_and_creates_no_file(tmp_path: Path):
    """Settings reach jobs through run_consumer; an invalid setting and a missing ORC_HOME
    do not matter until then, and a job queued before configure_queue says what is missing."""
    import sys

    env = base_env(tmp_path)
    env["ORC_BACKUP_SCHEDULE"] = "not a schedule"  # load_settings() would refuse it
    code = (
        "import workers.consumer, workers.enqueue\n"
        "from workers.backup_jobs import backup_now_job\n"
        "try:\n"
        "    backup_now_job()\n"
        "except RuntimeError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "configure_queue(settings)" in result.stdout
    assert not Path(env["ORC_HOME"]).exists()
