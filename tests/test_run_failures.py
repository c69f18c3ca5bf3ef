"""When a run goes wrong: API errors, a crashed or silent agent, a full disk, a moving base.

Each case runs the real Claude Code CLI (through claude-agent-sdk and orc-agent-exec) against
the fake Anthropic API of tests/fake_anthropic.py (Anthropic's API is the one thing that cannot
run here), in a real git worktree, each on one database, SQLite and PostgreSQL in turn
(tests.support.on_one_database); orc serve killed as a whole runs on both. Each must end in a
clear task state with a reason a person can act on, with no agent process left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from orc.db.models import Run, Task, TaskPhase, TranscriptEntry
from orc.runs.agent import AgentConfig, launcher_path
from orc.runs.control import queue_run
from tests.fake_anthropic import (
    CWD,
    Failure,
    FakeAnthropic,
    Stall,
    bash,
    overloaded,
    rate_limited,
    server_error,
    text,
    tool_calls,
    write,
)
from tests.support import agent_saved, descendants, on_one_database, run_orc, small_tmpfs
from tests.test_run_engine import (
    DONE,
    TOOLS,
    execute_in_background,
    git,
    policy,
    queued_task,
    run_once,
    wait_until,
)


def retrying(tmp_path: Path, fake: FakeAnthropic, retries: int) -> dict[str, object]:
    """Policy changes that bound Claude Code's API retries (10 by default: minutes)."""
    environ = dict(policy(tmp_path, fake).environ)
    environ["CLAUDE_CODE_MAX_RETRIES"] = str(retries)
    return {"environ": environ}


async def notes(task: Task) -> list[str]:
    entries = await TranscriptEntry.filter(task_number=task.number, kind="note").order_by("id")
    return [entry.content["text"] for entry in entries]


async def assert_ended(task: Task, status: str) -> str:
    """The task and its run ended with ``status``, no worker holds it; the task's reason."""
    await task.refresh_from_db()
    run = await Run.filter(task_id=task.number).order_by("-id").first()
    assert run is not None
    assert (task.status, run.status, run.lease_owner) == (status, status, None)
    return task.reason or ""


async def agent_tree(tmp_path: Path, task: Task) -> list[psutil.Process]:
    """The running agent: its launcher and everything below it (from the pidfile)."""
    path = tmp_path / "home" / "agent-home" / f"TASK-{task.number:03d}" / "agent.pid"

    async def written() -> bool:  # the CLI may start a tool before the launcher writes it
        return path.exists()

    await wait_until(written)
    launcher = psutil.Process(int(path.read_text().split()[0]))
    return [launcher, *launcher.children(recursive=True)]


def gone(processes: list[psutil.Process]) -> bool:
    """Whether every one of ``processes`` has ended (zombies count as ended)."""
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                return False
    return True


async def assert_gone(processes: list[psutil.Process], within: float = 5.0) -> None:
    async def ended() -> bool:
        return gone(processes)

    await wait_until(ended, within)


def cli_of(tree: list[psutil.Process]) -> psutil.Process:
    """The Claude Code CLI of an agent's process tree (its other processes may end meanwhile)."""
    (cli,) = [p for p in tree if _name(p) == "claude"]
    return cli


def _name(process: psutil.Process) -> str | None:
    try:
        return process.name()
    except psutil.NoSuchProcess:
        return None


async def tool_running(marker: Path) -> None:
    async def started() -> bool:
        return marker.exists()

    await wait_until(started, 60)


async def tool_call_saved(tmp_path: Path, task: Task) -> None:
    """Wait until the CLI's session file holds the long tool call, so a resume can carry it."""

    async def saved() -> bool:
        return agent_saved(tmp_path / "home", f"TASK-{task.number:03d}", "sleep(300)")

    await wait_until(saved, 60)


def long_tool(marker: Path) -> str:
    return f"touch {marker} && python3 -c 'import time; time.sleep(300)'"


# -- the API fails -------------------------------------------------------------------------


@on_one_database("sqlite")
@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (lambda: rate_limited(retry_after=1), "kept answering 429 (rate limited)"),
        (overloaded, "stayed overloaded (529)"),
        (server_error, "the Anthropic API failed (HTTP 500)"),
    ],
    ids=["429", "529", "500"],
)
async def test_an_api_error_past_the_retries_fails_the_run_with_the_reason(
    store, fake, repo, tmp_path, failure: Callable[[], Failure], reason: str
):
    task = await queued_task(repo)
    fake.script([failure() for _ in range(5)])
    assert await run_once(tmp_path, fake, **retrying(tmp_path, fake, 2)) == "failed"

    message = await assert_ended(task, "failed")
    assert reason in message and "run the task again later" in message
    assert len(fake.message_requests) == 3  # the call and Claude Code's two retries, no more
    retried = await notes(task)
    assert len(retried) == 2 and all("retry" in note for note in retried)


@on_one_database("postgres")
async def test_api_errors_within_the_retries_are_waited_out_and_the_run_completes(
    store, fake, repo, tmp_path
):
    task = await queued_task(repo)
    fake.script(
        [rate_limited(retry_after=1), overloaded(), server_error(), text(DONE % "done at last")]
    )
    assert await run_once(tmp_path, fake, **retrying(tmp_path, fake, 3)) == "completed"
    await assert_ended(task, "completed")
    retried = await notes(task)
    assert len(retried) == 3
    assert all(status in note for status, note in zip(("429", "529", "500"), retried, strict=True))


# -- the agent's process dies ----------------------------------------------------------------


@on_one_database("sqlite")
async def test_an_agent_killed_mid_turn_is_resumed_once_and_the_phase_completes(
    store, fake, repo, tmp_path
):
    task = await queued_task(repo)
    marker = tmp_path / "tool-started"
    fake.script([tool_calls(bash(long_tool(marker))), text(DONE % "finished after the crash")])
    _, running = await execute_in_background(tmp_path, fake)
    await tool_running(marker)
    await tool_call_saved(tmp_path, task)
    tree = await agent_tree(tmp_path, task)
    cli_of(tree).kill()  # from outside: the OOM killer, a person

    assert await asyncio.wait_for(running, 60) == "completed"
    assert gone(tree)  # the launcher ended the tool with the CLI
    await assert_ended(task, "completed")
    assert "the agent stopped unexpectedly (its process was killed (SIGKILL)); resuming its " in (
        "\n".join(await notes(task))
    )
    # The same session went on: the killed tool call is in what the agent sent next.
    assert "sleep(300)" in str(fake.message_requests[-1].messages)
    phase = await TaskPhase.get(task_id=task.number, name="implement")
    assert (phase.status, phase.iterations) == ("completed", 2)


@on_one_database("postgres")
async def test_an_agent_that_dies_twice_in_a_phase_fails_the_run(store, fake, repo, tmp_path):
    task = await queued_task(repo)
    first, second = tmp_path / "first", tmp_path / "second"
    fake.script([tool_calls(bash(long_tool(first))), tool_calls(bash(long_tool(second)))])
    _, running = await execute_in_background(tmp_path, fake)
    trees = []
    for marker in (first, second):
        await tool_running(marker)
        trees.append(await agent_tree(tmp_path, task))
        cli_of(trees[-1]).kill()

    assert await asyncio.wait_for(running, 60) == "failed"
    reason = await assert_ended(task, "failed")
    assert reason == (
        "the agent stopped unexpectedly twice in the implement phase: its process was killed "
        "(SIGKILL)"
    )
    await assert_gone([p for tree in trees for p in tree])
    phase = await TaskPhase.get(task_id=task.number, name="implement")
    assert (phase.status, phase.iterations) == ("failed", 2)  # not shown as still running


@on_one_database("sqlite")
async def test_a_cli_that_exits_non_zero_is_tried_twice_then_fails(store, fake, repo, tmp_path):
    task = await queued_task(repo)
    broken = tmp_path / "broken-claude"
    broken.write_text("#!/bin/sh\necho 'claude: cannot start' >&2\nexit 3\n")
    broken.chmod(0o755)
    agent = AgentConfig(str(broken), launcher_path(), None, "acceptEdits", TOOLS)
    assert await run_once(tmp_path, fake, agent=agent) == "failed"
    reason = await assert_ended(task, "failed")
    assert reason == (
        "the agent stopped unexpectedly twice in the implement phase: its process exited "
        "with code 3"
    )


# -- the agent goes silent, or takes too long ------------------------------------------------


@on_one_database("postgres")
async def test_a_stalled_stream_is_interrupted_and_the_retry_completes_the_phase(
    store, fake, repo, tmp_path
):
    task = await queued_task(repo)
    fake.script([Stall(60), text(DONE % "answered the second time")])
    # Long enough for the CLI to start and send its request under load (it takes seconds).
    assert await run_once(tmp_path, fake, idle_timeout_seconds=10.0) == "completed"
    await assert_ended(task, "completed")
    assert [r.answer for r in fake.message_requests] == ["stall 60s", "200 stream"]
    assert any("interrupted, trying again" in note for note in await notes(task))


@on_one_database("sqlite")
async def test_a_phase_past_its_timeout_fails_and_its_agent_is_gone(store, fake, repo, tmp_path):
    task = await queued_task(repo)
    fake.script([Stall(60)])
    _, running = await execute_in_background(
        tmp_path, fake, phase_timeout_seconds=15.0, idle_timeout_seconds=60.0
    )
    pidfile = tmp_path / "home" / "agent-home" / f"TASK-{task.number:03d}" / "agent.pid"

    async def agent_started() -> bool:  # the agent is waiting on the stalled stream
        return bool(fake.message_requests) and pidfile.exists()

    await wait_until(agent_started)
    tree = await agent_tree(tmp_path, task)

    assert await asyncio.wait_for(running, 60) == "failed"
    reason = await assert_ended(task, "failed")
    assert reason == "the implement phase ran longer than 15 s (ORC_AGENT_PHASE_TIMEOUT)"
    await assert_gone(tree)


# -- the disk fills ---------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (mounting needs root: skipped where it is not allowed)."""
    with small_tmpfs(tmp_path / "disk", 1) as disk:
        yield disk


@on_one_database("postgres")
async def test_a_full_disk_fails_the_run_with_the_reason_and_keeps_committed_phases(
    store, fake, repo, small_disk, tmp_path
):
    # The repository and the task's worktree on the small disk; orc's database elsewhere.
    project = small_disk / "shop"
    subprocess.run(["cp", "-a", str(repo), str(project)], check=True)
    (small_disk / "worktrees").mkdir()
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "home" / "worktrees").symlink_to(small_disk / "worktrees")
    task = await queued_task(project, weight="small")
    fake.script(
        [
            tool_calls(write(CWD + "/SPEC.md", "Say hello.\n")),
            text(DONE % "spec written"),
            # Random bytes do not compress: the file fills the disk, and git cannot store it.
            tool_calls(bash(f"head -c 4000000 /dev/urandom > {CWD}/big.bin")),
            text(DONE % "implemented"),
        ]
    )
    assert await run_once(tmp_path, fake) == "failed"

    reason = await assert_ended(task, "failed")
    assert reason.startswith("the disk is full: could not commit the implement phase's work: ")
    assert "No space left on device" in reason
    assert reason.endswith("; free space there and run the task again")
    branch = f"orc/TASK-{task.number:03d}"
    assert git(project, "log", "--format=%s", branch).splitlines()[0] == (
        f"TASK-{task.number:03d} spec: spec written"
    )
    phases = await TaskPhase.filter(task_id=task.number).order_by("id")
    assert [(p.name, p.status) for p in phases] == [("spec", "completed"), ("implement", "failed")]

    # Space is freed and the task runs again: the committed spec phase is not repeated.
    worktree = small_disk / "worktrees" / "shop" / f"TASK-{task.number:03d}"
    (worktree / "big.bin").unlink()
    fake.script(
        [
            tool_calls(write(CWD + "/hello.py", "print('hello')\n")),
            text(DONE % "implemented"),
            text('{"status": "complete", "summary": "fine", "findings": []}'),
        ]
    )
    await queue_run(task.number, "test")
    assert await run_once(tmp_path, fake) == "completed"
    log = git(project, "log", "--format=%s", branch).splitlines()
    assert [line for line in log if " spec: " in line] == [
        f"TASK-{task.number:03d} spec: spec written"
    ]
    assert log[0] == f"TASK-{task.number:03d} implement: implemented"
    spec_prompts = [
        r for r in fake.message_requests if "This is the **spec** phase" in str(r.user_texts())
    ]
    assert len({r.headers.get("x-claude-code-session-id") for r in spec_prompts}) == 1


# -- the base branch moves ---------------------------------------------------------------------


@on_one_database("sqlite")
async def test_commits_on_the_base_branch_during_a_run_stay_out_of_the_task_branch(
    store, fake, repo, tmp_path
):
    from orc.runs.views import task_diff

    project = repo
    task = await queued_task(project, weight="small")
    started_at = git(project, "rev-parse", "main").strip()
    someone_commits = (
        f"echo news > {project}/NEWS.md && git -C {project} add NEWS.md && "
        f"git -C {project} -c user.name=Dev -c user.email=dev@example.com commit -qm news"
    )
    fake.script(
        [
            # While the spec phase runs, someone commits on main (the task's base).
            tool_calls(bash(someone_commits), write(CWD + "/SPEC.md", "Say hello.\n")),
            text(DONE % "spec written"),
            tool_calls(write(CWD + "/hello.py", "print('hello')\n")),
            text(DONE % "implemented"),
            text('{"status": "complete", "summary": "fine", "findings": []}'),
        ]
    )
    assert await run_once(tmp_path, fake) == "completed"

    await task.refresh_from_db()
    branch = f"orc/TASK-{task.number:03d}"
    assert git(project, "rev-parse", "main").strip() != started_at  # main moved
    assert task.base_commit == started_at  # the task keeps the commit it started from
    assert git(project, "merge-base", "main", branch).strip() == started_at
    assert git(project, "ls-tree", "--name-only", branch).split() == [
        "README.md",
        "SPEC.md",
        "hello.py",
    ]
    diff = await task_diff(task.number, tmp_path / "home")
    assert diff.base_commit == started_at
    assert diff.stat.split("\n")[:2] == [" SPEC.md  | 1 +", " hello.py | 1 +"]
    assert "NEWS.md" not in diff.patch
    # What docs/tasks.md tells the user: the branch merges onto the moved main cleanly.
    merged = subprocess.run(
        ["git", "-C", str(project), "merge-tree", "--write-tree", "main", branch],
        capture_output=True,
        text=True,
    )
    assert merged.returncode == 0, merged.stdout


# -- orc serve killed as a whole ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)  # three phases, a crash and a restart of real processes
def test_orc_serve_killed_mid_phase_leaves_no_agent_and_goes_on_after_a_restart(
    migrated, orc_env, fake, repo, server_factory
):
    from tests.test_runs_cli import agent_env, tool_call_kept
    from tests.test_worker import poll, worker_child

    env = agent_env(orc_env, fake)
    assert run_orc(["init"], env, cwd=repo).returncode == 0
    server = server_factory(env).start()
    assert run_orc(["new", "Survive a crash", "--weight", "small"], env, cwd=repo).returncode == 0
    marker = repo.parent / "tool-started"
    fake.script(
        [
            tool_calls(write(CWD + "/SPEC.md", "Say hello.\n")),
            text(DONE % "spec written"),
            tool_calls(bash(long_tool(marker))),
            # After the restart: the implement phase's session resumed.
            tool_calls(write(CWD + "/hello.py", "print('hello')\n")),
            text("Picked up again.\n" + DONE % "implemented after the crash"),
            text('{"status": "complete", "summary": "fine", "findings": []}'),
        ]
    )
    assert run_orc(["run", "TASK-001"], env).returncode == 0
    poll(lambda: True if marker.exists() else None, 90, "the tool to start", server.logs)

    tool_call_kept(server, env)
    worker = poll(lambda: worker_child(server), 10, "the worker", server.logs)
    agent = worker.children(recursive=True)
    # (A short-lived helper of the CLI may end meanwhile: _name gives None for it.)
    assert {"orc-agent-exec", "claude"} <= {_name(p) for p in agent}, agent

    # kill -9 of everything orc serve is: the launcher's group and its children's sessions.
    groups = {os.getpgid(server.pid)} | {
        os.getpgid(p.pid) for p in psutil.Process(server.pid).children()
    }
    for group in groups:
        os.killpg(group, signal.SIGKILL)
    assert server.process is not None
    server.process.wait(10)

    # No agent process outlives it: the launcher, the CLI and the tool all end ...
    _, alive = psutil.wait_procs(agent, timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive
    # ... and the run is still held by the dead worker: nothing ended it as failed.
    shown_then = run_orc(["show", "TASK-001"], env, timeout=60)
    assert "running" in shown_then.stdout, shown_then.stdout + shown_then.stderr

    before_restart = len(fake.message_requests)
    restarted = server_factory(env).start()
    follow = run_orc(["log", "TASK-001", "--follow"], env, timeout=180)
    assert follow.returncode == 0, follow.stdout + follow.stderr + restarted.logs()
    assert "Picked up again." in follow.stdout
    # The interrupted phase's session was resumed: its history came along.
    # (Any request after the restart: the CLI also sends side requests of its own.)
    resumed = fake.message_requests[before_restart:]
    assert any("sleep(300)" in json.dumps(r.messages) for r in resumed), resumed
    shown = restarted.get("/api/tasks/TASK-001").json()
    assert shown["status"] == "completed"
    assert [(p["name"], p["status"]) for p in shown["phases"]] == [
        ("spec", "completed"),
        ("implement", "completed"),
        ("review", "completed"),
    ]
    # The committed spec phase ran once, in one session, and was not repeated.
    spec_sessions = {
        r.headers.get("x-claude-code-session-id")
        for r in fake.message_requests
        if "This is the **spec** phase" in json.dumps(r.messages)
    }
    assert len(spec_sessions) == 1
    log = subprocess.run(
        ["git", "-C", str(repo), "log", "--format=%s", "orc/TASK-001"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert log[:2] == [
        "TASK-001 implement: implemented after the crash",
        "TASK-001 spec: spec written",
    ]
    # One agent at a time, and none left once the run is over.
    assert not [p for p in descendants(restarted.pid) if p.name() in ("claude", "orc-agent-exec")]
