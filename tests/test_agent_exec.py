"""orc-agent-exec: the agent gets only its environment, and no process of it outlives the run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from orc.runs.agent import launcher_path

# What the worker starts: the package's wrapper (python -I -S agent_exec.py), which must have
# kept its executable mode; not the console script, which is only the fallback.
AGENT_EXEC = launcher_path()
assert AGENT_EXEC.endswith("agent-exec.sh"), AGENT_EXEC
# A stand-in for the Claude Code CLI: prints its environment, starts a tool that would run
# for ever (as a test runner or dev server started by the agent might), then waits.
FAKE_CLI = """#!/bin/sh
env | sort > "$OUT/env"
sleep 1000 &
echo $! > "$OUT/tool"
echo started > "$OUT/started"
wait
"""


def launch_env(tmp_path: Path) -> dict[str, str]:
    cli = tmp_path / "claude"
    cli.write_text(FAKE_CLI)
    cli.chmod(0o755)
    return {
        **os.environ,
        "ORC_AUTH_TOKEN": "secret-of-orc",
        "DATABASE_URL": "postgres://orc:pw@db/orc",
        "ANTHROPIC_API_KEY": "sk-ant-for-the-agent",
        "OUT": str(tmp_path),
        "ORC_AGENT_CLI": str(cli),
        "ORC_AGENT_ENV_KEYS": "ANTHROPIC_API_KEY,OUT,PATH",
        "ORC_AGENT_PIDFILE": str(tmp_path / "agent.pid"),
        "ORC_AGENT_PYTHON": sys.executable,
    }


def wait_for(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def gone(pid: int, timeout: float = 5) -> bool:
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def test_the_agent_sees_only_the_variables_orc_chose(tmp_path: Path):
    proc = subprocess.Popen([AGENT_EXEC], env=launch_env(tmp_path))
    wait_for(tmp_path / "started")
    wait_for(tmp_path / "agent.pid")
    names = {line.split("=", 1)[0] for line in (tmp_path / "env").read_text().splitlines()}
    assert {"ANTHROPIC_API_KEY", "OUT", "PATH"} <= names
    assert not names & {"ORC_AUTH_TOKEN", "DATABASE_URL", "ORC_AGENT_CLI", "HOME"}
    launcher, cli = map(int, (tmp_path / "agent.pid").read_text().split())
    assert launcher == proc.pid and cli != proc.pid  # the CLI runs in a group of its own
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 128 + signal.SIGTERM


def test_stopping_the_launcher_ends_the_cli_and_every_tool_it_started(tmp_path: Path):
    proc = subprocess.Popen([AGENT_EXEC], env=launch_env(tmp_path))
    wait_for(tmp_path / "tool")
    wait_for(tmp_path / "agent.pid")  # the CLI may start its tool before the launcher writes it
    tool = int((tmp_path / "tool").read_text())
    cli = int((tmp_path / "agent.pid").read_text().split()[1])
    proc.terminate()
    proc.wait(5)
    assert gone(cli) and gone(tool)


def test_a_tool_the_cli_left_running_ends_with_the_turn(tmp_path: Path):
    # A CLI that ends normally with a tool still running in a session of its own (a dev
    # server, a hung test): the launcher, its subreaper, ends it before exiting.
    env = launch_env(tmp_path)
    cli = tmp_path / "claude"
    cli.write_text('#!/bin/sh\nsetsid sleep 1000 &\necho $! > "$OUT/tool"\nexit 3\n')
    result = subprocess.run([AGENT_EXEC], env=env, timeout=30)
    assert result.returncode == 3
    assert gone(int((tmp_path / "tool").read_text()))
    assert not (tmp_path / "agent.pid").exists()


def test_a_cli_that_leaves_nothing_running_exits_with_its_code(tmp_path: Path):
    env = launch_env(tmp_path)
    (tmp_path / "claude").write_text('#!/bin/sh\nexec env > "$OUT/env"\n')
    result = subprocess.run([AGENT_EXEC], env=env, timeout=30)
    assert result.returncode == 0 and (tmp_path / "env").exists()
    assert not (tmp_path / "agent.pid").exists()


def test_a_worker_killed_with_sigkill_leaves_no_agent_process_behind(tmp_path: Path):
    # The "worker": a process that starts the launcher and is then killed with SIGKILL.
    worker = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess; subprocess.run([{AGENT_EXEC!r}])"],
        env=launch_env(tmp_path),
    )
    wait_for(tmp_path / "tool")
    wait_for(tmp_path / "agent.pid")  # the CLI may start its tool before the launcher writes it
    tool = int((tmp_path / "tool").read_text())
    cli = int((tmp_path / "agent.pid").read_text().split()[1])
    worker.kill()
    worker.wait()
    assert gone(cli) and gone(tool)


def test_killing_the_workers_whole_process_group_leaves_no_agent_process_behind(tmp_path: Path):
    # orc serve killed as a whole: the worker's group goes at once, the launcher included if
    # it stayed in it (it leaves it, and ends the agent when its worker's death reaches it).
    worker = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess; subprocess.run([{AGENT_EXEC!r}])"],
        env=launch_env(tmp_path),
        start_new_session=True,
    )
    wait_for(tmp_path / "tool")
    wait_for(tmp_path / "agent.pid")
    tool = int((tmp_path / "tool").read_text())
    cli = int((tmp_path / "agent.pid").read_text().split()[1])
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    assert gone(cli) and gone(tool)


def test_a_launcher_killed_with_sigkill_takes_its_cli_along(tmp_path: Path):
    proc = subprocess.Popen([AGENT_EXEC], env=launch_env(tmp_path))
    wait_for(tmp_path / "tool")
    wait_for(tmp_path / "agent.pid")
    tool = int((tmp_path / "tool").read_text())
    cli = int((tmp_path / "agent.pid").read_text().split()[1])
    try:
        proc.kill()
        proc.wait()
        # The CLI gets SIGTERM (the real one then ends its tools; this stand-in cannot).
        assert gone(cli)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(tool, signal.SIGKILL)


def test_without_a_cli_it_says_so_and_exits_2(tmp_path: Path):
    env = {k: v for k, v in launch_env(tmp_path).items() if k != "ORC_AGENT_CLI"}
    result = subprocess.run([AGENT_EXEC], env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "ORC_AGENT_CLI is not set" in result.stderr
