"""The whole container killed in the middle of a phase (`docker kill`: SIGKILL to its PID 1, so
every process in it dies at once), then `docker start`: the run goes on.

The image built from the repository's Dockerfile by the suite's own engine
(tests/docker_support.py); a repository mounted read-only under /projects; the real Claude Code
CLI in the container against the fake Messages API on the host (tests/fake_anthropic.py, the
one fake). One of the image tests' xdist group, so it shares their engine and images.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.docker_support import AUTH, GROUP_RUN_CRASH, TOKEN, Container, Dockerd, Images
from tests.fake_anthropic import CWD, FakeAnthropic, bash, text, tool_calls, write
from tests.test_image import _repository

# The image tests' group (GROUP_IMAGE once tests/docker_support.py names the groups).
pytestmark = [pytest.mark.xdist_group(GROUP_RUN_CRASH), pytest.mark.timeout(900)]
DONE = '{"status": "complete", "summary": "%s"}'
NAME = "orc-run-crash"
MARKER = "/tmp/orc-tool-started"  # in the container: the implement phase's tool is running
AGENT_PROGRAMS = ("claude", "orc-agent-exec")


@pytest.fixture
def crash_container(dockerd: Dockerd, images: Images) -> Iterator[tuple[Container, FakeAnthropic]]:
    gateway = dockerd.gateway()
    with FakeAnthropic(host=gateway) as fake:
        repo = _repository()
        dockerd.docker(
            *("run", "-d", "--name", NAME, "-p", "127.0.0.1::8080"),
            *("-v", f"{NAME}-data:/home/orc/.orc", "-v", f"{repo}:/projects/shop:ro"),
            *("-e", f"ORC_AUTH_TOKEN={TOKEN}"),
            *("-e", f"ANTHROPIC_BASE_URL={fake.base_url}", "-e", "ANTHROPIC_API_KEY=sk-ant-fake"),
            *("-e", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"),
            *("-e", "ORC_GIT_AUTHOR=orc bot <bot@example.com>"),
            images.orc,
        )
        try:
            yield Container(dockerd, NAME), fake
        finally:
            dockerd.docker("rm", "-f", NAME, check=False)
            dockerd.docker("volume", "rm", f"{NAME}-data", check=False)
            subprocess.run(["rm", "-rf", str(repo)], check=False)


def _programs(container: Container) -> list[str]:
    """The names of every process in the container."""
    listed = container.exec("sh", "-c", "cat /proc/[0-9]*/comm 2>/dev/null", check=False)
    return listed.stdout.split()


def _task(container: Container) -> dict:
    return httpx.get(container.url + "/api/tasks/TASK-001", headers=AUTH, timeout=10).json()


def test_docker_kill_mid_phase_then_docker_start_resumes_the_phase_and_repeats_none(
    crash_container: tuple[Container, FakeAnthropic],
):
    main, fake = crash_container
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

    main.dockerd.docker("kill", NAME)  # SIGKILL to PID 1: the container and all in it
    assert main.inspect("{{.State.Running}}") == "false"
    killed_at = time.monotonic()
    main.dockerd.docker("start", NAME)
    main.wait_for(main.health_ok, 120, "the API after docker start")
    # Nothing of the killed run survived the restart: no agent until the run is taken up.
    main.wait_for(lambda: _task(main)["status"] == "completed", 300, "the run to end")
    resumed_in = time.monotonic() - killed_at

    shown = _task(main)
    assert [(p["name"], p["status"]) for p in shown["phases"]] == [
        ("spec", "completed"),
        ("implement", "completed"),
        ("review", "completed"),
    ]
    # The interrupted phase's session was resumed (its history came along) ...
    assert "sleep 300" in json.dumps(fake.message_requests[-2].messages)
    # ... and the committed spec phase ran once, in one session.
    spec_sessions = {
        r.headers.get("x-claude-code-session-id")
        for r in fake.message_requests
        if "This is the **spec** phase" in json.dumps(r.messages)
    }
    assert len(spec_sessions) == 1
    clone = "/home/orc/.orc/clones/shop"  # the project is mounted read-only: orc cloned it
    branch = main.exec("git", "-C", clone, "log", "--format=%s", "orc/TASK-001")
    assert branch.stdout.splitlines()[:2] == [
        "TASK-001 implement: implemented after the kill",
        "TASK-001 spec: spec written",
    ]
    # No agent left once the run is over.
    assert not set(AGENT_PROGRAMS) & set(_programs(main))
    main.dockerd.timings["docker kill -> run completed"] = round(resumed_in, 1)
    main.dockerd.timings["run crash test"] = round(time.monotonic() - began, 1)
