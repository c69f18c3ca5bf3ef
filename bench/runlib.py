"""Helpers for the task-run benchmarks (run_overhead, run_event_latency, run_memory).

Not a benchmark itself. On top of benchlib: the fake Anthropic API of tests/fake_anthropic.py
in this process (the only fake: Claude Code itself is the real CLI that claude-agent-sdk
bundles), a git repository to run tasks in, ``orc serve`` with its job worker pointed at the
fake, a scripted trivial conversation per task, and the same Claude Code invocation run
directly through ``claude_agent_sdk.query`` (the baseline: what orc adds is the difference).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib

sys.path.insert(0, str(benchlib.REPO_DIR))  # tests.fake_anthropic

from tests.fake_anthropic import (
    CWD,
    FakeAnthropic,
    RecordedRequest,
    Reply,
    Turn,
    _Handler,
    bash,
    edit,
    text,
    tool_calls,
    write,
)

PROJECT = "shop"
DONE = '{"status": "complete", "summary": "%s"}'
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
}


# ----------------------------------------------------------------------------- the fake API


def time_fake_sends() -> None:
    """Make the fake note, on each request it answers, the reply it took and when it had sent
    the answer's last byte (``RecordedRequest.reply`` and ``.sent_at``, monotonic clock).

    Patched here rather than in the test fixture: only the latency benchmark needs it.
    """
    answer, next_reply = _Handler._messages, FakeAnthropic._next_reply
    if getattr(answer, "_timed", False):
        return

    def timed(self: _Handler, request: RecordedRequest) -> None:
        answer(self, request)
        request.sent_at = time.monotonic()  # type: ignore[attr-defined]

    def noted(self: FakeAnthropic, request: RecordedRequest) -> Reply | None:
        reply = next_reply(self, request)
        request.reply = reply  # type: ignore[attr-defined]
        return reply

    timed._timed = True  # type: ignore[attr-defined]
    _Handler._messages = timed  # type: ignore[method-assign]
    FakeAnthropic._next_reply = noted  # type: ignore[method-assign]


def sent_texts(fake: FakeAnthropic) -> dict[str, float]:
    """Each streamed turn's text, and when the fake had sent that turn's last byte."""
    sent = {}
    for request in fake.message_requests:
        reply = getattr(request, "reply", None)
        at = getattr(request, "sent_at", None)
        if isinstance(reply, Turn) and reply.text and at is not None:
            sent[reply.text] = at
    return sent


def trivial_conversation(tag: str, sleep: float = 0.0) -> list[Reply]:
    """One phase of a trivial task: Write, Edit, Bash, then the outcome (4 API calls).

    Each turn says a marker (``<tag> turn N``) so a transcript event can be matched to the
    answer of the fake that carried it. ``sleep`` makes the Bash call last that long.
    """
    path = CWD + "/note.txt"
    command = f"sleep {sleep} && cat note.txt" if sleep else "cat note.txt"
    return [
        tool_calls(write(path, "hello\n"), say=f"{tag} turn 1"),
        tool_calls(edit(path, "hello", "hello, world"), say=f"{tag} turn 2"),
        tool_calls(bash(command, "Show the note"), say=f"{tag} turn 3"),
        text(f"{tag} turn 4\n" + DONE % "wrote the note"),
    ]


# ----------------------------------------------------------------------------- git


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def make_repo(root: Path) -> Path:
    """A repository ``shop`` with one commit on main."""
    path = root / PROJECT
    path.mkdir(parents=True)
    (path / "README.md").write_text("# shop\n")
    git("init", "-q", "-b", "main", cwd=path)
    git("add", ".", cwd=path)
    git("commit", "-qm", "start", cwd=path)
    return path


def add_worktree(repo: Path, path: Path, branch: str) -> Path:
    """A worktree of ``repo`` on a new branch (what orc makes for a task)."""
    git("worktree", "add", "-q", "-b", branch, str(path), "HEAD", cwd=repo)
    return path


def remove_worktree(repo: Path, path: Path) -> None:
    """Remove a worktree the baseline made (orc removes a completed task's, on its clock):
    the repository's list of worktrees stays as short on both sides, and each git command of
    an agent reads all of it."""
    git("worktree", "remove", "--force", str(path), cwd=repo)


# ----------------------------------------------------------------------------- orc serve


def agent_settings(fake: FakeAnthropic) -> dict[str, str]:
    """What the agent needs to reach the fake (orc passes these on to it)."""
    return {
        "ANTHROPIC_BASE_URL": fake.base_url,
        "ANTHROPIC_API_KEY": "sk-ant-bench-key",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }


@dataclass
class Orc:
    """``orc serve`` (API and job worker) with a registered project, and a client for it."""

    server: benchlib.Server
    repo: Path
    home: Path
    http: Any = None  # orcbench.Http

    def create_task(self, title: str) -> str:
        created = self.http.json(
            "POST", "/api/tasks", {"title": title, "weight": "trivial"}, expect=201
        )
        return str(created["id"])

    def run_task(self, task_id: str) -> None:
        self.http.json("POST", f"/api/tasks/{task_id}/run", {}, expect=202)

    def status(self, task_id: str) -> str:
        return str(self.http.json("GET", f"/api/tasks/{task_id}")["status"])

    def workdir(self, task_id: str) -> Path:
        return self.home / "worktrees" / PROJECT / task_id


@contextlib.contextmanager
def database(kind: str, pg_url: str) -> Iterator[str | None]:
    """None for SQLite (orc's default, in ORC_HOME), or the URL of a new PostgreSQL database
    (dropped afterwards)."""
    import secrets

    import orcbench

    if kind == "sqlite":
        yield None
        return
    name = f"orc_bench_{secrets.token_hex(4)}"
    asyncio.run(orcbench._pg_admin(pg_url, f'CREATE DATABASE "{name}"'))
    try:
        yield orcbench._pg_url_for(pg_url, name)
    finally:
        asyncio.run(orcbench._pg_admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run_on_each_database(
    args: Any, temp_prefix: str, bench: Callable[[Any, Path, str | None], Any]
) -> None:
    """The entry of a bench with --db and --pg-url: one process per database (orcbench), each
    running ``bench(args, root, database_url)`` in a fresh temporary directory."""
    import orcbench

    if orcbench.per_database(args.db):
        return
    print(benchlib.load_note())
    with benchlib.temp_dir(temp_prefix) as root, database(args.db.strip(), args.pg_url) as url:
        asyncio.run(bench(args, root, url))


@contextlib.contextmanager
def orc_serve(
    root: Path,
    fake: FakeAnthropic,
    max_runs: int,
    extra_env: dict[str, str] | None = None,
    database_url: str | None = None,
) -> Iterator[Orc]:
    """``orc serve`` in ``root`` with its worker, the agent pointed at ``fake``; on SQLite in
    ORC_HOME unless ``database_url`` names another database."""
    import orcbench

    repo = make_repo(root)
    port = benchlib.free_port()
    server = benchlib.orc_server(root, port)
    if database_url:
        server.env["DATABASE_URL"] = database_url
    server.env.update(agent_settings(fake))
    server.env.update(
        ORC_MAX_CONCURRENT_RUNS=str(max_runs),
        ORC_GIT_AUTHOR="orc bot <bot@example.com>",
        **(extra_env or {}),
    )
    init = subprocess.run(
        [*benchlib.orc_command(), "init"],
        cwd=repo,
        env=server.env,
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        raise RuntimeError(f"orc init failed: {init.stderr}")
    server.start()
    try:
        server.wait_healthy()
        orc = Orc(server, repo, Path(server.env["ORC_HOME"]), orcbench.Http(port))
        yield orc
        orc.http.close()
    finally:
        server.stop()


def cpu_by_process(server: benchlib.Server) -> dict[str, tuple[float, float]]:
    """For each of the server's long-lived processes, by role: (its own CPU seconds, the CPU
    seconds of its children that it has waited for)."""
    import psutil

    tick = os.sysconf("SC_CLK_TCK")
    found: dict[str, tuple[float, float]] = {}
    for pid in [server.pid, *server.descendant_pids()]:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
            cmd = " ".join(psutil.Process(pid).cmdline())
        except (OSError, psutil.Error):
            continue
        if pid == server.pid:
            role = "launcher"
        elif "_api" in cmd:
            role = "API"
        elif "worker" in cmd:
            role = "worker"
        else:
            continue  # agents come and go: their CPU shows in the worker's children
        fields = stat[stat.rfind(b")") + 2 :].split()
        own = (int(fields[11]) + int(fields[12])) / tick
        children = (int(fields[13]) + int(fields[14])) / tick
        found[role] = (own, children)
    return found


def tree_cpu_seconds(server: benchlib.Server) -> float:
    """CPU seconds used by the server's processes and every child they have waited for
    (utime + stime + cutime + cstime): the agents' CPU once their runs ended."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in [server.pid, *server.descendant_pids()]:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        total += sum(int(f) for f in fields[11:15])
    return total / tick


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of every child of it that has been waited for."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


# ----------------------------------------------------------------------------- WebSocket


@dataclass
class Watch:
    """A real ``/api/ws`` client subscribed to every task; notes each event's arrival."""

    port: int
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _ws: Any = None

    async def start(self) -> None:
        from websockets.asyncio.client import connect

        self._ws = await connect(
            f"ws://{benchlib.HOST}:{self.port}/api/ws",
            compression=None,
            proxy=None,
            ping_interval=None,
        )
        await self._ws.send(json.dumps({"type": "subscribe", "task_id": "*"}))
        while '"subscribed"' not in await self._ws.recv():
            pass
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self._ws:
            arrived = time.monotonic()
            message = json.loads(raw)
            if message.get("type") == "event":
                self.events.append((arrived, message))
                self.changed.set()

    async def until(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the runs did not end in time")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))

    def final_states(self) -> dict[str, str]:
        """Each task's last state as the state events say."""
        states: dict[str, str] = {}
        for _, message in self.events:
            if message.get("event_type") == "state":
                states[message["task_id"]] = message["data"]["to"]
        return states

    def reasons(self) -> dict[str, str]:
        """The reason each task's last state event gave, if any."""
        reasons: dict[str, str] = {}
        for _, message in self.events:
            if message.get("event_type") == "state":
                reasons[message["task_id"]] = message["data"].get("reason", "")
        return reasons

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._ws is not None:
            await self._ws.close()


@contextlib.asynccontextmanager
async def watching(port: int) -> AsyncIterator[Watch]:
    watch = Watch(port)
    await watch.start()
    try:
        yield watch
    finally:
        await watch.close()


# ----------------------------------------------------------------------------- direct


def agent_environment(fake: FakeAnthropic, home: Path) -> dict[str, str]:
    """The whole environment of a directly run agent: what orc gives its agent."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    for name in ("LANG", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "TERM"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(agent_settings(fake), DISABLE_AUTOUPDATER="1")
    return env


@dataclass
class DirectJob:
    """One Claude Code invocation of the baseline: where, with what prompt and HOME."""

    cwd: str
    home: str
    prompt: str


def direct_options(job: DirectJob) -> Any:
    """The options orc gives the SDK (orc.runs.agent.run_turn), without orc's launcher.

    The SDK merges this process's whole environment under ``env``: the direct runner runs in
    a process whose environment is already the agent's (``run_direct_jobs``), as orc's
    launcher gives the CLI only that.
    """
    from claude_agent_sdk import ClaudeAgentOptions

    from orc.config import load_settings
    from orc.runs.agent import bundled_cli

    settings = load_settings({})
    Path(job.home).mkdir(parents=True, exist_ok=True)
    return ClaudeAgentOptions(
        cwd=job.cwd,
        cli_path=in_own_session(bundled_cli(), Path(job.home)),
        env={"HOME": job.home},
        model=settings.agent_model,
        permission_mode=settings.agent_permission_mode,  # type: ignore[arg-type]
        allowed_tools=list(settings.agent_allowed_tools),
        setting_sources=[],
    )


def in_own_session(cli: str, where: Path) -> str:
    """A wrapper that runs ``cli`` in a session of its own, as orc-agent-exec does.

    Not for isolation here: with the kernel's scheduler autogroups (on by default), each
    session shares the CPUs fairly with the others, so an agent in its own session gets more
    of a busy machine than one in its parent's session. Without this, on this shared 2-CPU
    machine orc took 0.55-0.84 of the baseline's wall time (six rounds) for the same CPU
    time; with it, 1.06 in the next run.
    """
    wrapper = where / "claude-in-own-session"
    wrapper.write_text(f'#!/bin/sh\nexec setsid {shlex.quote(cli)} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def implement_prompt(task_id: str, title: str, project: Path) -> str:
    """The prompt orc sends for a trivial task's implement phase."""
    from orc.runs.phases import PhaseContext, phase_prompt

    context = PhaseContext(task_id=task_id, title=title, description="", base_commit="HEAD")
    return phase_prompt("implement", context, project)


async def run_direct(job: DirectJob, on_message: Callable[[Any, float], None] | None = None) -> Any:
    """One Claude Code invocation through the SDK, as orc would make it; its result message."""
    from claude_agent_sdk import ResultMessage, query

    result = None
    async for message in query(prompt=job.prompt, options=direct_options(job)):
        if on_message is not None:
            on_message(message, time.monotonic())
        if isinstance(message, ResultMessage):
            result = message
    if result is None or result.is_error:
        raise RuntimeError(f"the direct run failed: {result}")
    return result


async def _direct_jobs(
    jobs: list[DirectJob], concurrency: int, arrivals: list[tuple[str, float]]
) -> float:
    from claude_agent_sdk import AssistantMessage, TextBlock

    def note(message: Any, at: float) -> None:
        if isinstance(message, AssistantMessage):
            for block in message.content:
                if isinstance(block, TextBlock):
                    arrivals.append((block.text, at))

    gate = asyncio.Semaphore(concurrency)

    async def one(job: DirectJob) -> None:
        async with gate:
            await run_direct(job, note)

    started = time.perf_counter()
    await asyncio.gather(*(one(job) for job in jobs))
    return time.perf_counter() - started


def direct_child() -> None:
    """``runlib.py --direct``: run the jobs on stdin; print the seconds they took."""
    spec = json.loads(sys.stdin.read())
    import claude_agent_sdk  # noqa: F401  (imported before the clock starts, as in orc's worker)

    jobs = [DirectJob(**job) for job in spec["jobs"]]
    cpu, machine = own_cpu_seconds(), benchlib.machine_cpu_seconds()[0]
    arrivals: list[tuple[str, float]] = []
    took = asyncio.run(_direct_jobs(jobs, spec["concurrency"], arrivals))
    cpu, machine = own_cpu_seconds() - cpu, benchlib.machine_cpu_seconds()[0] - machine
    print(json.dumps({"took": took, "cpu": cpu, "machine": machine, "arrivals": arrivals}))


@dataclass
class DirectResult:
    """What a direct batch took, and when (monotonic clock) each text reached the runner."""

    took: float
    cpu: float
    arrivals: list[tuple[str, float]]
    machine: float = 0.0  # CPU seconds the whole machine used meanwhile


def run_direct_jobs(fake: FakeAnthropic, jobs: list[DirectJob], concurrency: int) -> DirectResult:
    """Run ``jobs`` directly, ``concurrency`` at once, in a child process that has only the
    agent's environment (so the CLI gets what orc's launcher gives it, no more): seconds from
    the first invocation to the end of the last, the CPU seconds of the runner (after its
    imports) and the agents, and each assistant text's arrival (CLOCK_MONOTONIC is one clock
    for every process of the machine)."""
    env = agent_environment(fake, Path(jobs[0].home))
    env["PYTHONPATH"] = os.pathsep.join([str(benchlib.BENCH_DIR), str(benchlib.REPO_DIR)])
    spec = {"jobs": [job.__dict__ for job in jobs], "concurrency": concurrency}
    done = subprocess.run(
        [benchlib.python_exe(), __file__, "--direct"],
        input=json.dumps(spec),
        env=env,
        capture_output=True,
        text=True,
        check=False,
        start_new_session=True,  # as orc serve runs in a session of its own
    )
    if done.returncode != 0:
        raise RuntimeError(f"the direct runs failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    arrivals = [(text, at) for text, at in result["arrivals"]]
    return DirectResult(result["took"], result["cpu"], arrivals, result["machine"])


if __name__ == "__main__":
    if sys.argv[1:] == ["--direct"]:
        direct_child()
