"""orc's own disk fills during a run: ORC_HOME (the SQLite database, the queue, the worktrees,
the agent's home) on a small tmpfs that the agent fills.

The real ``orc serve`` (API and job worker) and the real Claude Code CLI against the fake
Anthropic API; on SQLite (the database on the full disk) and PostgreSQL (the database
elsewhere, the queue and worktrees on it). Expected: the run ends in a clear state with a
message, the database is intact, no task is left ``running`` with nothing running, the API
answers (never a 500), and once space is freed the task runs again to the end.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.fake_anthropic import CWD, bash, text, tool_calls, write
from tests.support import OrcServer, descendants, run_orc, small_tmpfs
from tests.test_run_engine import DONE, git
from tests.test_runs_cli import agent_env
from tests.test_worker import poll

DISK_MIB = 8
# What the worker logs when the database cannot take the run's end yet (ending.record_end).
WAITING = "but the database cannot record it yet"


@pytest.fixture
def home_disk(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs for ORC_HOME (mounting needs root: skipped where it is not allowed)."""
    with small_tmpfs(tmp_path / "disk", DISK_MIB) as disk:
        yield disk


def agent_processes(server: OrcServer) -> list[str]:
    """The agent's processes under the server (one that ends while it is looked at is gone)."""
    names = []
    for process in descendants(server.pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.name() in ("claude", "orc-agent-exec"):
                names.append(process.name())
    return names


def task_of(server: OrcServer) -> dict[str, Any]:
    shown = server.get("/api/tasks/TASK-001")
    assert shown.status_code == 200, shown.text  # the API answers throughout, never a 500
    return shown.json()


@pytest.mark.slow
@pytest.mark.timeout(300)  # two runs of real processes and a disk that fills
def test_orc_home_filling_up_mid_run_ends_clearly_and_orc_goes_on_once_space_is_freed(
    orc_env, fake, repo, home_disk, server_factory
):
    env = agent_env(orc_env, fake)
    home = home_disk / "home"
    env.update(ORC_HOME=str(home), ORC_DISK_WARN_MB="2", ORC_DISK_CRITICAL_MB="1")
    on_sqlite = env["DATABASE_URL"].startswith("sqlite")
    if on_sqlite:
        env["DATABASE_URL"] = f"sqlite://{home / 'orc.db'}"
    # The project on that disk too (a read-write /projects on the volume, or orc's clone of a
    # read-only one): the phase's commit needs room there.
    project = home_disk / "shop"
    subprocess.run(["cp", "-a", str(repo), str(project)], check=True)
    assert run_orc(["init"], env, cwd=project).returncode == 0
    server = server_factory(env).start()
    assert (
        run_orc(["new", "Fill the disk", "--weight", "trivial"], env, cwd=project).returncode == 0
    )
    big = home / "worktrees" / "shop" / "TASK-001" / "big.bin"
    fake.script(
        [
            # Random bytes do not compress: the tool fills ORC_HOME's disk to the last byte.
            tool_calls(bash(f"head -c {2 * DISK_MIB}000000 /dev/urandom > {big}; true")),
            text(DONE % "implemented"),
        ]
    )
    assert run_orc(["run", "TASK-001"], env).returncode == 0

    def ended_or_waiting() -> dict[str, Any] | None:
        """The task once its run ended, or once the worker says it cannot record the end
        (SQLite: the database is on the full disk)."""
        shown = task_of(server)
        if shown["status"] not in ("queued", "running") or WAITING in server.logs():
            return shown
        return None

    shown = poll(ended_or_waiting, 120, "the run to end", server.logs)
    assert big.exists() and shutil.disk_usage(home).free < 2**20
    if on_sqlite:  # nothing can be written: the task shows running until space is freed
        assert shown["status"] == "running"
    else:  # the database is elsewhere: the run ended at once, saying why
        assert shown["status"] == "failed"
        assert shown["reason"].startswith("the disk is full: could not commit"), shown["reason"]
    # While the disk is full: no agent is left, the API reads and says why it cannot write.
    poll(lambda: True if not agent_processes(server) else None, 30, "the agent to go", server.logs)
    ready = server.get("/api/health/ready")
    assert ready.status_code == 503 and "ORC_DISK_CRITICAL_MB" in ready.json()["checks"]["disk"]
    created = httpx.post(server.base_url + "/api/tasks", json={"title": "Another"}, timeout=10)
    if on_sqlite:  # the database is on the full disk
        assert created.status_code == 503, created.text
        assert created.json()["error"] == "database_unavailable"
    else:
        assert created.status_code == 201, created.text

    # Space is freed: the run's end is recorded with the reason; the database is intact.
    big.unlink()
    shown = poll(
        lambda: shown if (shown := task_of(server))["status"] != "running" else None,
        60,
        "the run's end to be recorded",
        server.logs,
    )
    assert (WAITING in server.logs()) == on_sqlite
    assert shown["status"] == "failed", shown
    assert shown["reason"].startswith("the disk is full: "), shown["reason"]
    assert shown["reason"].endswith("; free space there and run the task again")
    if on_sqlite:
        with contextlib.closing(sqlite3.connect(home / "orc.db")) as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert server.get("/api/health/ready").status_code == 200

    # ... and orc works on: the task runs again to the end, new tasks can be made.
    fake.forget()  # on SQLite the run ended before the agent's last reply was asked for
    fake.script(
        [
            tool_calls(write(CWD + "/hello.py", "print('hello')\n")),
            text(DONE % "implemented after the disk was freed"),
        ]
    )
    follow = run_orc(["run", "TASK-001", "--follow"], env, timeout=180)
    assert follow.returncode == 0, follow.stdout + follow.stderr + server.logs()
    assert task_of(server)["status"] == "completed"
    log = git(project, "log", "--format=%s", "orc/TASK-001").splitlines()
    assert log[0] == "TASK-001 implement: implemented after the disk was freed"
    created = httpx.post(server.base_url + "/api/tasks", json={"title": "Later"}, timeout=10)
    assert created.status_code == 201, created.text
    assert not agent_processes(server)
