"""The whole container killed in the middle of a phase (`docker kill`: SIGKILL to its PID 1, so
every process in it dies at once), then `docker start`: the run goes on. On SQLite (orc.db in
the container's volume) and on PostgreSQL (the ``postgres:16-alpine`` stand-in of
tests/docker_standins.py in a container of its own, reached by name on a user-defined network,
as in deploy/docker-compose.team.yml): there the database outlives the container, with the killed
worker's claim on the run still in it.

The image built from the repository's Dockerfile by the suite's own engine
(tests/docker_support.py); a repository mounted read-only under /projects; the real Claude Code
CLI in the container against the fake Messages API on the host (tests/fake_anthropic.py, the
one fake). A group of its own (GROUP_RUN_CRASH): both databases run in one worker, on the image
tests' engine and images.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest

from tests.docker_standins import POSTGRES, ensure_standins
from tests.docker_support import (
    AUTH,
    GROUP_RUN_CRASH,
    Container,
    Dockerd,
    Images,
    agent_container_args,
    shop_repository,
)
from tests.fake_anthropic import (
    CWD,
    DONE,
    FakeAnthropic,
    RecordedRequest,
    bash,
    text,
    tool_calls,
    write,
)
from tests.support import LOOPBACK

pytestmark = [pytest.mark.xdist_group(GROUP_RUN_CRASH), pytest.mark.timeout(900)]
NAME = "orc-run-crash"
DB_NAME = "orc-run-crash-db"  # the PostgreSQL container, by this name on NETWORK
NETWORK = "orc-run-crash-net"
MARKER = "/tmp/orc-tool-started"  # in the container: the implement phase's tool is running
AGENT_PROGRAMS = ("claude", "orc-agent-exec")


@dataclass
class Crash:
    """The orc container, the fake Messages API, and SQL on the database orc uses."""

    main: Container
    fake: FakeAnthropic
    database: str
    # Rows of a query, fields split; from outside orc (sqlite3 in the container, psql in the
    # database's): what orc itself reports is what is being checked.
    sql: Callable[[str], list[list[str]]]


def _sqlite(main: Container) -> Callable[[str], list[list[str]]]:
    def query(statement: str) -> list[list[str]]:
        shown = main.exec(
            *("sqlite3", "-readonly", "-cmd", ".timeout 5000", "-separator", "|"),
            *("/home/orc/.orc/orc.db", statement),
        )
        return [line.split("|") for line in shown.stdout.splitlines()]

    return query


def _postgres(dockerd: Dockerd) -> Callable[[str], list[list[str]]]:
    def query(statement: str) -> list[list[str]]:
        shown = dockerd.docker(
            *("exec", DB_NAME, "psql", "-U", "postgres", "-d", "orc", "-At", "-F", "|"),
            *("-v", "ON_ERROR_STOP=1", "-c", statement),
        )
        return [line.split("|") for line in shown.stdout.splitlines()]

    return query


def _start_postgres(dockerd: Dockerd, stack: contextlib.ExitStack) -> str:
    """The stand-in on its own network, ready for TCP connections; orc's DATABASE_URL."""
    for step, seconds in ensure_standins(dockerd).items():
        dockerd.timings[step] = seconds
    password = secrets.token_hex(16)
    dockerd.docker("rm", "-f", "-v", DB_NAME, check=False)  # what a killed run left
    dockerd.docker("network", "rm", NETWORK, check=False)
    dockerd.docker("network", "create", NETWORK)
    stack.callback(dockerd.docker, "network", "rm", NETWORK, check=False)
    dockerd.docker(
        *("run", "-d", "--name", DB_NAME, "--network", NETWORK),
        *("-e", f"POSTGRES_PASSWORD={password}", "-e", "POSTGRES_DB=orc", POSTGRES),
    )
    stack.callback(dockerd.docker, "rm", "-f", "-v", DB_NAME, check=False)
    db = Container(dockerd, DB_NAME)
    # TCP: the entry point's first start listens on the socket only while it initialises.
    ready = ("pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "orc")
    db.wait_for(lambda: db.exec(*ready, check=False).returncode == 0, 120, "PostgreSQL")
    return f"postgres://postgres:{password}@{DB_NAME}:5432/orc?sslmode=disable"


@pytest.fixture(params=["sqlite", "postgres"])
def crash(request: pytest.FixtureRequest, dockerd: Dockerd, images: Images) -> Iterator[Crash]:
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(FakeAnthropic(host=dockerd.gateway()))
        repo = shop_repository()
        stack.callback(subprocess.run, ["rm", "-rf", str(repo)], check=False)
        on_database: tuple[str, ...] = ()
        if request.param == "postgres":
            url = _start_postgres(dockerd, stack)
            on_database = ("--network", NETWORK, "-e", f"DATABASE_URL={url}")
        dockerd.docker("rm", "-f", NAME, check=False)
        dockerd.docker("volume", "rm", f"{NAME}-data", check=False)
        stack.callback(dockerd.docker, "volume", "rm", f"{NAME}-data", check=False)
        stack.callback(dockerd.docker, "rm", "-f", NAME, check=False)
        dockerd.docker(
            "run", "-d", *agent_container_args(NAME, repo, fake.base_url), *on_database, images.orc
        )
        main = Container(dockerd, NAME)
        sql = _postgres(dockerd) if request.param == "postgres" else _sqlite(main)
        yield Crash(main, fake, request.param, sql)


def _programs(container: Container) -> list[str]:
    """The names of every process in the container."""
    listed = container.exec("sh", "-c", "cat /proc/[0-9]*/comm 2>/dev/null", check=False)
    return listed.stdout.split()


def _task(container: Container) -> dict:
    return LOOPBACK.get(container.url + "/api/tasks/TASK-001", headers=AUTH, timeout=10).json()


def _runs(crash: Crash) -> list[list[str]]:
    """The runs: status, lease holder (``hostname:pid:start``; empty: none) and lease expiry."""
    return crash.sql("SELECT status, lease_owner, lease_expires_at FROM run ORDER BY id")


def _claimed_at(crash: Crash) -> list[datetime]:
    """When a worker claimed the task's run, each time (the ``state`` events of the outbox)."""
    rows = crash.sql(
        "SELECT data, created_at FROM event WHERE event_type = 'state' AND task_id = 'TASK-001'"
        " ORDER BY id"
    )
    return [_at(at) for data, at in rows if json.loads(data).get("action") == "claimed"]


def _sessions(requests: list[RecordedRequest], phase: str) -> set[str | None]:
    """The agent sessions (Claude Code's session ids) that worked on ``phase``."""
    prompt = f"This is the **{phase}** phase"
    return {
        r.headers.get("x-claude-code-session-id")
        for r in requests
        if prompt in json.dumps(r.messages)
    }


def _sessions_of_orc(crash: Crash) -> int:
    """Sessions connected to orc's database, but the one asking."""
    [[count]] = crash.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'orc' AND pid <> pg_backend_pid()"
    )
    return int(count)


def _at(value: str) -> datetime:
    """A timestamp as sqlite3 (``…+00:00``) or psql (``…+00``) prints it."""
    return datetime.fromisoformat(value)


def test_docker_kill_mid_phase_then_docker_start_resumes_the_phase_and_repeats_none(
    crash: Crash,
):
    main, fake = crash.main, crash.fake
    began = time.monotonic()
    main.wait_for(main.health_ok, 120, "the API")
    # What an operator types in the container.
    for argv in (
        ("orc", "project", "add", "/projects/shop"),
        ("orc", "new", "Survive docker kill", "--weight", "small", "--project", "shop"),
    ):
        done = main.exec(*argv, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    fake.script(
        [
            tool_calls(write(CWD + "/SPEC.md", "Say hello.\n")),
            text(DONE % "spec written"),
            tool_calls(bash(f"touch {MARKER} && sleep 300")),
            # After docker start: the implement phase's session, resumed.
            tool_calls(write(CWD + "/hello.py", "print('hello')\n")),
            text("Picked up again.\n" + DONE % "implemented after the kill"),
            text('{"status": "complete", "summary": "fine", "findings": []}'),
        ]
    )
    queued = main.exec("orc", "run", "TASK-001", check=False)
    assert queued.returncode == 0, queued.stdout + queued.stderr
    main.wait_for(
        lambda: main.exec("test", "-e", MARKER, check=False).returncode == 0,
        240,
        "the implement phase's tool to start",
    )
    assert set(AGENT_PROGRAMS) <= set(_programs(main))
    [(status, killed_owner, killed_lease)] = _runs(crash)
    assert status == "running" and killed_owner.startswith(main.inspect("{{.Config.Hostname}}"))
    requests_before = len(fake.message_requests)

    main.dockerd.docker("kill", NAME)  # SIGKILL to PID 1: the container and all in it
    assert main.inspect("{{.State.Running}}") == "false"
    killed_at = time.monotonic()
    if crash.database == "postgres":
        # The database outlived the container: the dead worker's claim is still in it, and none
        # of its sessions (no transaction of it holds orc's change lock, which claims take).
        # The lease is read after the kill: the worker renews it on its own clock, and a renewal
        # may land between the read above and the kill.
        [(status, owner, killed_lease)] = _runs(crash)
        assert (status, owner) == ("running", killed_owner)
        main.wait_for(lambda: _sessions_of_orc(crash) == 0, 30, "the killed sessions to end")
        # No one renews a dead worker's lease.
        assert _runs(crash) == [["running", killed_owner, killed_lease]]
    main.dockerd.docker("start", NAME)
    taken_back = main.wait_for(
        lambda: len(fake.message_requests) > requests_before, 240, "the phase to resume"
    )
    main.wait_for(lambda: _task(main)["status"] == "completed", 300, "the run to end")
    resumed_in = time.monotonic() - killed_at
    # The restarted worker took the dead one's run back at once (the container keeps its
    # hostname: the claim was of this host, its worker gone), not when the lease ran out.
    logged = main.dockerd.docker("logs", NAME)
    lines = (logged.stdout + logged.stderr).splitlines()
    took_back = [line for line in lines if "took back 1 run(s) of a worker of this host" in line]
    assert len(took_back) == 1, [line for line in lines if "run(s)" in line or "claimed" in line]
    first_claim, reclaimed = _claimed_at(crash)
    assert first_claim < reclaimed < _at(killed_lease)

    shown = _task(main)
    assert [(p["name"], p["status"]) for p in shown["phases"]] == [
        ("spec", "completed"),
        ("implement", "completed"),
        ("review", "completed"),
    ]
    # One run, ended, holding no claim: nothing left `running` with nothing running.
    assert _runs(crash) == [["completed", "", ""]]
    assert crash.sql("SELECT status FROM task") == [["completed"]]
    # The interrupted phase's session was resumed (its history came along) ...
    # (Side requests of the CLI's own may come in between: requests are picked by content.)
    before_kill, after_kill = (
        fake.message_requests[:requests_before],
        fake.message_requests[requests_before:],
    )
    [killed_session] = _sessions(before_kill, "implement")
    assert _sessions(after_kill, "implement") == {killed_session}
    assert any("sleep 300" in json.dumps(r.messages) for r in after_kill)
    # ... and the committed spec phase ran once, in one session.
    assert len(_sessions(fake.message_requests, "spec")) == 1
    clone = "/home/orc/.orc/clones/shop"  # the project is mounted read-only: orc cloned it
    branch = main.exec("git", "-C", clone, "log", "--format=%s", "orc/TASK-001")
    assert branch.stdout.splitlines()[:2] == [
        "TASK-001 implement: implemented after the kill",
        "TASK-001 spec: spec written",
    ]
    # No agent left once the run is over.
    assert not set(AGENT_PROGRAMS) & set(_programs(main))
    timings = main.dockerd.timings
    timings[f"{crash.database}: docker start -> session resumed"] = round(taken_back, 1)
    timings[f"{crash.database}: docker kill -> run completed"] = round(resumed_in, 1)
    timings[f"{crash.database}: run crash test"] = round(time.monotonic() - began, 1)
