"""What a user does: orc init in a repository, orc serve, orc new, orc run --follow, orc diff.

Real processes throughout (orc serve with its job worker, the Claude Code CLI through
claude-agent-sdk); only Anthropic's API is the fake of tests/fake_anthropic.py.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.fake_anthropic import CWD, FakeAnthropic, bash, text, tool_calls, write
from tests.support import OrcServer, agent_saved, run_orc

DONE = '{"status": "complete", "summary": "%s"}'


def agent_env(orc_env: dict[str, str], fake: FakeAnthropic) -> dict[str, str]:
    """orc's environment with the agent pointed at the fake API."""
    fake_env = fake.agent_env("unused")
    return {
        **orc_env,
        "ANTHROPIC_BASE_URL": fake_env["ANTHROPIC_BASE_URL"],
        "ANTHROPIC_API_KEY": fake_env["ANTHROPIC_API_KEY"],
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "ORC_GIT_AUTHOR": "orc bot <bot@example.com>",
    }


@pytest.mark.slow
def test_a_user_runs_a_task_to_a_reviewable_branch(orc_env, fake, repo, server_factory):
    env = agent_env(orc_env, fake)
    init = run_orc(["init"], env, cwd=repo)
    assert init.returncode == 0, init.stderr
    assert f"registered project shop ({repo})" in init.stdout
    server = server_factory(env).start()

    created = run_orc(["new", "Add a greeting", "--weight", "trivial"], env, cwd=repo)
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("TASK-001 created in shop")

    fake.script(
        [
            tool_calls(write(CWD + "/greeting.py", "print('hello')\n")),
            text("Added greeting.py.\n" + DONE % "added a greeting"),
        ]
    )
    run = run_orc(["run", "TASK-001", "--follow"], env, cwd=repo, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "TASK-001 queued" in run.stdout
    assert "⚙ Write" in run.stdout and "Added greeting.py." in run.stdout
    assert "TASK-001 completed" in run.stderr

    diff = run_orc(["diff", "TASK-001"], env, cwd=repo)
    assert diff.returncode == 0 and "+print('hello')" in diff.stdout
    log = run_orc(["log", "TASK-001"], env)
    assert "» implement #1" in log.stdout and "⚙ Write" in log.stdout

    task = server.get("/api/tasks/TASK-001").json()
    assert (task["status"], task["project"], task["branch"]) == (
        "completed",
        "shop",
        "orc/TASK-001",
    )
    metrics = server.get("/api/metrics").text
    assert 'orc_runs_total{outcome="completed"} 1.0' in metrics
    assert 'orc_phase_duration_seconds_count{phase="implement"} 1.0' in metrics
    assert "orc_runs_queued 0.0" in metrics and "orc_tasks_active 0.0" in metrics
    commit = subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--format=%an|%s", "orc/TASK-001"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert commit == "orc bot|TASK-001 implement: added a greeting"
    # The user's checkout is where it was.
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--abbrev-ref", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert head == "main" and not (repo / "greeting.py").exists()


def test_bad_input_is_one_line_and_exit_2(orc_env, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    added = run_orc(["project", "add", str(plain)], orc_env)
    assert added.returncode == 2
    assert added.stderr.strip() == (
        f"orc: error: {plain} is not a git repository; give the path of a repository "
        "(or run `git init` there and commit once)"
    )
    unknown = run_orc(["run", "TASK-9"], orc_env)
    assert (unknown.returncode, unknown.stderr.strip()) == (2, "orc: error: no task TASK-009")
    bad = run_orc(["diff", "nonsense"], orc_env)
    assert bad.returncode == 2 and "ids look like TASK-001" in bad.stderr
    created = run_orc(["new", "No project here"], orc_env, cwd=plain)
    assert created.returncode == 0
    refused = run_orc(["run", "TASK-001"], orc_env)
    assert refused.returncode == 2 and "belongs to no project" in refused.stderr


@pytest.mark.slow
def test_a_worker_killed_mid_phase_leaves_no_agent_and_the_run_goes_on(
    migrated, orc_env, fake, repo, server_factory
):
    from tests.test_worker import poll, worker_child

    env = agent_env(orc_env, fake)
    assert run_orc(["init"], env, cwd=repo).returncode == 0
    server = server_factory(env).start()
    assert run_orc(["new", "Wait for it", "--weight", "trivial"], env, cwd=repo).returncode == 0
    marker = repo.parent / "tool-started"
    fake.script(
        [
            # A tool that would run for a long time: the worker dies while it runs.
            tool_calls(bash(f"touch {marker} && python3 -c 'import time; time.sleep(300)'")),
            text("Picked up again.\n" + DONE % "finished after the crash"),
        ]
    )
    assert run_orc(["run", "TASK-001"], env).returncode == 0
    poll(lambda: True if marker.exists() else None, 60, "the tool to start", server.logs)

    tool_call_kept(server, env)
    worker = poll(lambda: worker_child(server), 10, "the worker", server.logs)

    def the_tool() -> list[psutil.Process] | None:
        found = []
        for proc in worker.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a short-lived helper may be a zombie
                if "sleep(300)" in " ".join(proc.cmdline()):
                    found.append(proc)
        return found or None

    agent = poll(the_tool, 10, "the tool under the worker", server.logs)
    worker.kill()

    # The agent's processes die with their worker (nothing is orphaned) ...
    _, alive = psutil.wait_procs(agent, timeout=10)
    assert not alive
    # ... and the restarted worker takes the run over at once and finishes the phase.
    follow = run_orc(["log", "TASK-001", "--follow"], env, timeout=120)
    assert follow.returncode == 0, follow.stdout + follow.stderr
    assert "Picked up again." in follow.stdout
    # The interrupted phase's session was resumed: its history came along.
    assert "sleep(300)" in json.dumps(fake.message_requests[-1].messages)
    task = server.get("/api/tasks/TASK-001").json()
    assert task["status"] == "completed"
    implement = next(p for p in task["phases"] if p["name"] == "implement")
    assert implement["status"] == "completed"


def tool_call_kept(server: OrcServer, env: dict[str, str]) -> None:
    """Wait until TASK-001's long tool call (``sleep(300)``) is kept where a resume reads it.

    A restarted worker resumes the session orc stored, and the CLI resumes it from its own
    session file. Both are written apart from the tool's start: orc stores the session when it
    reads the stream's first message (it has, once the tool call is in the transcript), and the
    CLI writes its file from a queue it drains every 100 ms (tests.support.agent_saved). A kill
    before either starts the phase afresh, or resumes a session that ends before the tool call.
    """
    from tests.test_worker import poll

    def recorded() -> bool | None:
        transcript = server.get("/api/tasks/TASK-001/transcript", params={"limit": 500}).text
        return True if "sleep(300)" in transcript else None

    def saved() -> bool | None:
        return agent_saved(Path(env["ORC_HOME"]), "TASK-001", "sleep(300)") or None

    poll(recorded, 60, "orc to record the tool call", server.logs)
    poll(saved, 60, "the CLI to save the tool call in its session", server.logs)
