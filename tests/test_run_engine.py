"""A run end to end: the real Claude Code CLI (through claude-agent-sdk and orc-agent-exec)
against the fake Anthropic API, in a real git worktree, on SQLite and PostgreSQL (what an agent
alone does, on one of them in turn: tests.support.on_one_database).

The fake (tests/fake_anthropic.py) stands in for Anthropic's API, the one thing that cannot
run here; everything else is real.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from orc.db.models import Event, Project, Run, Task, TaskPhase, TranscriptEntry, UsageEvent
from orc.runs.agent import AgentConfig, bundled_cli, launcher_path
from orc.runs.claims import claim_next_run
from orc.runs.control import queue_run, resume_run
from orc.runs.engine import RunExecution, RunPolicy
from orc.usage.pricing import load_prices
from tests.fake_anthropic import (
    CWD,
    FakeAnthropic,
    Stall,
    Usage,
    bash,
    overloaded,
    text,
    tool_calls,
    unauthorized,
    write,
)
from tests.support import is_alive, on_one_database, wait_for

TOOLS = ("Write", "Edit", "Bash", "Read")
DONE = '{"status": "complete", "summary": "%s"}'


@pytest.fixture
def project(repo: Path) -> Path:
    """The repository tasks run in (conftest's ``repo``)."""
    return repo


def policy(tmp_path: Path, fake: FakeAnthropic, **changes: object) -> RunPolicy:
    agent_env = fake.agent_env(str(tmp_path / "unused-home"))
    environ = {
        key: agent_env[key]
        for key in ("ANTHROPIC_BASE_URL", "NO_PROXY", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC")
    }
    environ["PATH"] = os.environ["PATH"]
    values: dict[str, object] = {
        "home": tmp_path / "home",
        "agent": AgentConfig(bundled_cli(), launcher_path(), None, "acceptEdits", TOOLS),
        "credentials": {"ANTHROPIC_API_KEY": agent_env["ANTHROPIC_API_KEY"]},
        "environ": environ,
        "prices": load_prices(tmp_path),
        "secrets": ("sk-ant-fake-key",),
        "author_email": "orc@example.com",
    }
    values.update(changes)
    return RunPolicy(**values)  # type: ignore[arg-type]


async def queued_task(project: Path, weight: str = "trivial", **fields: object) -> Task:
    record = await Project.create(name=project.name, path=str(project))
    task = await Task.create(
        title="Say hello", weight=weight, status="queued", project=record, **fields
    )
    await Run.create(task=task, status="queued", queued_at=datetime.now(UTC))
    return task


async def run_once(tmp_path: Path, fake: FakeAnthropic, **changes: object) -> str:
    claim = await claim_next_run("worker-test", max_running=2)
    assert claim is not None
    return await RunExecution(claim, policy(tmp_path, fake, **changes)).execute()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


async def test_a_trivial_task_runs_to_a_commit_on_its_branch(store, fake, project, tmp_path):
    task = await queued_task(project)
    fake.script(
        [
            tool_calls(write(CWD + "/hello.py", "print('hello')\n"), usage=Usage(100, 20)),
            text("Added hello.py.\n" + DONE % "added hello.py", usage=Usage(150, 30, 50, 0)),
        ]
    )
    assert await run_once(tmp_path, fake) == "completed"

    await task.refresh_from_db()
    assert (task.status, task.reason) == ("completed", None)
    branch = f"orc/TASK-{task.number:03d}"
    assert git(project, "show", f"{branch}:hello.py") == "print('hello')\n"
    subject = git(project, "log", "-1", "--format=%s|%ae", branch).strip()
    assert subject == f"TASK-{task.number:03d} implement: added hello.py|orc@example.com"
    assert git(project, "status", "--porcelain") == ""  # the user's checkout: untouched
    # The work is on the branch: the worktree and the agent's HOME went with the run's end.
    home = tmp_path / "home"
    assert not (home / "worktrees" / project.name / f"TASK-{task.number:03d}").exists()
    assert not (home / "agent-home" / f"TASK-{task.number:03d}").exists()
    assert git(project, "worktree", "list").count("\n") == 1  # the user's checkout only

    phase = await TaskPhase.get(task_id=task.number, name="implement")
    assert (phase.status, phase.iterations, phase.summary) == ("completed", 1, "added hello.py")
    assert phase.commit == git(project, "rev-parse", branch).strip()

    kinds = [e.kind for e in await TranscriptEntry.filter(task_number=task.number).order_by("id")]
    assert kinds[0] == "prompt" and kinds[-1] == "result"
    assert {"tool_use", "tool_result", "text"} <= set(kinds)
    assert "sk-ant-fake-key" not in str(
        [e.content for e in await TranscriptEntry.filter(task_number=task.number)]
    )
    usage = await UsageEvent.filter(task_number=task.number).order_by("id")
    # The turn's two API calls, counted exactly (the result's per-model totals).
    assert [(u.input_tokens, u.output_tokens, u.cache_read_tokens) for u in usage] == [
        (250, 50, 50)
    ]
    assert {u.phase for u in usage} == {"implement"} and all(u.model for u in usage)
    events = {e.event_type for e in await Event.filter(task_id=f"TASK-{task.number:03d}")}
    assert {"state", "phase", "transcript", "tokens"} <= events


@on_one_database("sqlite")
async def test_the_agent_runs_as_under_the_sdk_alone_and_sees_none_of_orcs_variables(
    store, fake, project, tmp_path, monkeypatch
):
    # orc's launcher used to drop what the SDK sets for its CLI (CLAUDE_CODE_ENTRYPOINT=sdk-py,
    # its version, the session-state frames it reads, PWD): the CLI then ran as another entry
    # point, and slower. The Bash tool prints the CLI's own environment (its process "claude").
    monkeypatch.setenv("ORC_AUTH_TOKEN", "orc-secret-token")
    task = await queued_task(project)
    show_cli_env = (
        'p=$$; while [ "$p" -gt 1 ] && [ "$(cat /proc/$p/comm)" != claude ]; do '
        "p=$(awk '{print $4}' /proc/$p/stat); done; tr '\\0' '\\n' < /proc/$p/environ | sort"
    )
    fake.script(
        [
            tool_calls(bash(show_cli_env, "Show the CLI's environment")),
            text("Looked.\n" + DONE % "looked"),
        ]
    )
    assert await run_once(tmp_path, fake) == "completed"

    results = await TranscriptEntry.filter(task_number=task.number, kind="tool_result")
    seen = str(results[0].content["content"]).splitlines()
    worktree = tmp_path / "home" / "worktrees" / project.name / f"TASK-{task.number:03d}"
    assert f"PWD={worktree}" in seen, seen
    assert "CLAUDE_CODE_ENTRYPOINT=sdk-py" in seen
    assert any(line.startswith("CLAUDE_AGENT_SDK_VERSION=") for line in seen)
    assert not [line for line in seen if "orc-secret-token" in line or "ORC_" in line]


@on_one_database("postgres")
async def test_a_phase_without_its_json_goes_on_in_the_same_session(store, fake, project, tmp_path):
    task = await queued_task(project)
    fake.script(
        [
            text("I looked around; more to do."),
            tool_calls(bash("echo done > " + CWD + "/out.txt")),
            text(DONE % "wrote out.txt"),
        ]
    )
    assert await run_once(tmp_path, fake) == "completed"
    phase = await TaskPhase.get(task_id=task.number, name="implement")
    assert phase.iterations == 2
    second = fake.message_requests[1]
    assert "Continue with the implement phase" in "\n".join(second.user_texts())
    assert "I looked around" in "\n".join(second.texts(("assistant",)))  # context carried over


@on_one_database("sqlite")
async def test_a_blocked_agent_pauses_the_task_with_its_question(store, fake, project, tmp_path):
    task = await queued_task(project)
    fake.script([text('{"status": "blocked", "summary": "Which greeting?"}')])
    assert await run_once(tmp_path, fake) == "blocked"
    await task.refresh_from_db()
    assert (task.status, task.reason) == ("blocked", "Which greeting?")

    # `orc resume TASK-001 --note …`: the answer reaches the agent in the same session.
    await resume_run(task.number, note="Say 'hi there'.")
    fake.script([text(DONE % "said hi there")])
    assert await run_once(tmp_path, fake) == "completed"
    asked, answered = fake.message_requests[0], fake.message_requests[-1]
    assert "Say 'hi there'." in str(answered.user_texts())
    session = "x-claude-code-session-id"
    assert answered.headers.get(session) == asked.headers.get(session)


@on_one_database("postgres")
async def test_a_refused_api_key_fails_the_run_at_once_naming_the_setting(
    store, fake, project, tmp_path
):
    task = await queued_task(project)
    fake.script([unauthorized()] * 3)
    assert await run_once(tmp_path, fake) == "failed"
    await task.refresh_from_db()
    assert task.status == "failed" and "ANTHROPIC_API_KEY" in (task.reason or "")
    assert len(fake.message_requests) <= 2  # not the CLI's ten retries with backoff
    # The run stopped the turn early and its agent with it: nothing is left retrying, and no
    # pipe of it is left open to a finalizer (which once raised inside a later test). The agent
    # ends on its launcher's SIGKILL, which can take a moment after the run has ended; without
    # that stop it ran on, retrying, for minutes.
    pid = agent_pid(tmp_path, task)
    await wait_for(lambda: not is_alive(pid), timeout=10)


@on_one_database("sqlite")
async def test_an_overloaded_api_is_retried_and_the_run_goes_on(store, fake, project, tmp_path):
    task = await queued_task(project)
    fake.script([overloaded(), text(DONE % "nothing to change")])
    assert await run_once(tmp_path, fake) == "completed"
    notes = await TranscriptEntry.filter(task_number=task.number, kind="note")
    assert any("529" in note.content["text"] for note in notes)


async def execute_in_background(tmp_path: Path, fake: FakeAnthropic, **changes: object):
    claim = await claim_next_run("worker-test", max_running=2)
    assert claim is not None
    return claim, asyncio.create_task(
        RunExecution(claim, policy(tmp_path, fake, **changes)).execute()
    )


async def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def agent_pid(tmp_path: Path, task: Task) -> int:
    path = tmp_path / "home" / "agent-home" / f"TASK-{task.number:03d}" / "agent.pid"
    return int(path.read_text().split()[1])  # the CLI (after the launcher's own pid)


@on_one_database("postgres")
async def test_cancel_ends_the_agent_and_its_tools_within_seconds(store, fake, project, tmp_path):
    task = await queued_task(project)
    # A tool that would run for ever (a hung test run), then a stream that stalls.
    fake.script([tool_calls(bash("python3 -c 'import time; time.sleep(300)'")), Stall(120)])
    claim, running = await execute_in_background(tmp_path, fake)

    async def tool_started() -> bool:
        return any(
            e.kind == "tool_use" for e in await TranscriptEntry.filter(task_number=task.number)
        )

    await wait_until(tool_started)
    pid = agent_pid(tmp_path, task)
    group = {pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))}
    await Run.filter(id=claim.run_id).update(control="cancel")
    started = time.monotonic()
    assert await asyncio.wait_for(running, 10) == "cancelled"
    assert time.monotonic() - started < 5
    await asyncio.sleep(0.5)
    assert not [p for p in group if is_alive(p)]
    await task.refresh_from_db()
    assert (task.status, task.reason) == ("failed", "cancelled")


@on_one_database("sqlite")
async def test_a_silent_agent_is_interrupted_retried_once_then_failed(
    store, fake, project, tmp_path
):
    task = await queued_task(project)
    fake.script([Stall(60), Stall(60)])
    status = await run_once(tmp_path, fake, idle_timeout_seconds=2.0)
    assert status == "failed"
    await task.refresh_from_db()
    assert "sent nothing for 2 s twice" in (task.reason or "")
    notes = await TranscriptEntry.filter(task_number=task.number, kind="note")
    assert any("interrupted, trying again" in n.content["text"] for n in notes)


async def test_pause_waits_for_the_turn_and_keeps_the_session(store, fake, project, tmp_path):
    task = await queued_task(project)
    fake.script([text("Half way."), text(DONE % "finished after the pause")])
    claim, running = await execute_in_background(tmp_path, fake)
    await Run.filter(id=claim.run_id).update(control="pause")
    assert await asyncio.wait_for(running, 60) == "paused"
    run = await Run.get(id=claim.run_id)
    assert run.status == "paused" and run.session_id and run.phase == "implement"

    # Resumed: the same run, the same session, the phase goes on.
    await Run.filter(id=run.id).update(status="queued")
    assert await run_once(tmp_path, fake) == "completed"
    last = fake.message_requests[-1]
    assert "Half way." in "\n".join(last.texts(("assistant",)))
    await task.refresh_from_db()
    assert task.status == "completed"


async def test_a_small_task_passes_its_spec_on_and_a_review_sends_it_back_once(
    store, fake, project, tmp_path
):
    task = await queued_task(project, weight="small")
    fake.script(
        [
            text("# Spec\nPrint hello from hello.py.\n" + DONE % "spec written"),
            tool_calls(write(CWD + "/hello.py", "print('helo')\n")),
            text(DONE % "added hello.py"),
            text(
                'Found a typo.\n{"status": "complete", "summary": "1 problem", '
                '"findings": ["hello.py: helo is misspelt"]}'
            ),
            tool_calls(write(CWD + "/hello.py", "print('hello')\n")),
            text(DONE % "fixed the typo"),
            text('{"status": "complete", "summary": "ready", "findings": []}'),
        ]
    )
    assert await run_once(tmp_path, fake) == "completed"

    implement_prompts = sorted(
        {
            text
            for request in fake.message_requests
            for text in request.user_texts()
            if "This is the **implement** phase" in text
        },
        key=len,
    )
    assert len(implement_prompts) == 2  # once, then again after the review
    assert "Print hello from hello.py." in implement_prompts[0]  # the spec reached implement
    assert "hello.py: helo is misspelt" in implement_prompts[1]  # and so did the findings
    branch = f"orc/TASK-{task.number:03d}"
    log = git(project, "log", "--format=%s", branch).splitlines()
    assert log[:2] == [
        f"TASK-{task.number:03d} implement: fixed the typo",
        f"TASK-{task.number:03d} implement: added hello.py",
    ]
    assert git(project, "show", f"{branch}:hello.py") == "print('hello')\n"
    run = await Run.get(task_id=task.number)
    assert run.review_rounds == 1


@on_one_database("postgres")
async def test_a_review_that_keeps_finding_problems_fails_the_task(store, fake, project, tmp_path):
    task = await queued_task(project, weight="small")
    finding = '{"status": "complete", "summary": "no", "findings": ["still wrong"]}'
    fake.script(
        [
            text(DONE % "spec"),
            text(DONE % "implemented"),
            text(finding),
            text(DONE % "implemented again"),
            text(finding),
        ]
    )
    assert await run_once(tmp_path, fake, max_review_rounds=1) == "failed"
    await task.refresh_from_db()
    assert task.reason == "review still found 1 problem(s) after 1 round(s) of changes"


async def test_a_run_that_reaches_its_budget_pauses_with_the_reason(store, fake, project, tmp_path):
    task = await queued_task(project, budget_usd=0.000001)
    fake.script([text("Looked around, more to do."), text(DONE % "never reached")])
    assert await run_once(tmp_path, fake) == "paused"
    await task.refresh_from_db()
    assert task.status == "paused"
    assert (task.reason or "").startswith("budget reached: $")
    run = await Run.get(task_id=task.number)
    assert run.cost_usd > 0 and run.session_id  # the agent's own figure; the session is kept
    assert len(fake.message_requests) == 1  # it stopped after the turn that crossed the budget


async def test_a_queued_run_starts_when_a_running_one_ends_not_at_the_next_poll(
    store, fake, project, tmp_path, monkeypatch
):
    from orc.runs import dispatcher as dispatching

    # Only the end of a run can wake the worker here: its next poll is an hour away.
    monkeypatch.setattr(dispatching, "POLL_SECONDS", 3600.0)
    first = await queued_task(project)
    second = await Task.create(
        title="Say hello again", weight="trivial", status="queued", project_id=first.project_id
    )
    await Run.create(task=second, status="queued", queued_at=datetime.now(UTC))
    fake.script([text(DONE % "said hello"), text(DONE % "said hello again")])
    dispatcher = dispatching.Dispatcher(policy(tmp_path, fake), "test-host:1", max_running=1)
    loop = asyncio.create_task(dispatcher.run_forever())

    async def both_completed() -> bool:
        return await Run.filter(status="completed").count() == 2

    try:
        await wait_until(both_completed, timeout=120)
    finally:
        dispatcher.stop()
        await asyncio.wait_for(loop, 15)
    await second.refresh_from_db()
    assert second.status == "completed"


async def test_an_idle_worker_starts_a_run_queued_meanwhile_not_at_its_next_poll(
    store, fake, project, tmp_path, monkeypatch
):
    from orc.db.url import DatabaseUrl
    from orc.runs import dispatcher as dispatching

    # Only the queuing can wake the worker here: its next poll is an hour away.
    monkeypatch.setattr(dispatching, "POLL_SECONDS", 3600.0)
    record = await Project.create(name=project.name, path=str(project))
    task = await Task.create(title="Say hello", weight="trivial", status="created", project=record)
    fake.script([text(DONE % "said hello")])
    database = DatabaseUrl(store)
    dispatcher = dispatching.Dispatcher(policy(tmp_path, fake), "test-host:1", 2, database)
    loop = asyncio.create_task(dispatcher.run_forever())
    try:
        await asyncio.sleep(0.5)  # the worker is idle, waiting
        await queue_run(task.number, "test")  # as `orc run` and the API do

        async def completed() -> bool:
            return await Run.filter(task_id=task.number, status="completed").exists()

        await wait_until(completed, timeout=120)
    finally:
        dispatcher.stop()
        await asyncio.wait_for(loop, 15)


async def test_a_stopping_worker_hands_its_runs_back_to_the_queue(store, fake, project, tmp_path):
    from orc.runs.dispatcher import Dispatcher

    task = await queued_task(project)
    fake.script([tool_calls(bash("python3 -c 'import time; time.sleep(300)'")), Stall(120)])
    dispatcher = Dispatcher(policy(tmp_path, fake), "test-host:1", max_running=2)
    loop = asyncio.create_task(dispatcher.run_forever())

    async def tool_running() -> bool:
        return await TranscriptEntry.filter(task_number=task.number, kind="tool_use").exists()

    await wait_until(tool_running)
    pid = agent_pid(tmp_path, task)
    tree = {pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))}
    dispatcher.stop()
    await asyncio.wait_for(loop, 15)

    await task.refresh_from_db()
    run = await Run.get(task_id=task.number)
    assert (task.status, run.status, run.lease_owner) == ("queued", "queued", None)
    assert run.session_id and run.phase == "implement"  # the next worker resumes the phase
    await asyncio.sleep(0.5)
    assert not [p for p in tree if is_alive(p)]
