"""Helpers for tests that run real orc processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

ORC = [sys.executable, "-m", "orc"]


# With pytest-xdist, each worker takes ports from a range of its own, below the kernel's
# ephemeral range: two workers can never pick the same port between its check and its use.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_PORTS = (
    iter(range(10000 + 2000 * int(_WORKER.removeprefix("gw")), 12000 + 2000 * int(_WORKER[2:])))
    if _WORKER.startswith("gw")
    else None
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    if _PORTS is not None:
        for port in _PORTS:
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(tmp_path: Path) -> dict[str, str]:
    """An environment with HOME and ORC_HOME inside tmp_path, so the machine's config is ignored."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORC_", "DATABASE_URL"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    home = tmp_path / "user"
    home.mkdir(exist_ok=True)
    env.update(
        HOME=str(home),
        ORC_HOME=str(tmp_path / "home"),
        ORC_LOG_FORMAT="json",
        ORC_SHUTDOWN_TIMEOUT="5",
    )
    return env


def run_orc(
    args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run one orc command to completion."""
    return subprocess.run(
        [*ORC, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def on_one_database(kind: str) -> pytest.MarkDecorator:
    """Run a test of the agent's behaviour on ``kind`` ("sqlite" or "postgres") only.

    For tests of what an agent or its API does (an error, a stall, a kill, a timeout): what
    such a run writes goes through the same functions as the runs that the tests on both
    databases check, and each of these tests costs a real Claude Code CLI or two. They
    alternate between the databases, so every failure path still writes to both; what depends
    on the database (claims, leases, workers, budgets, restarts) stays on both.
    """
    return pytest.mark.parametrize("database_url", [kind], indirect=True)


def agent_saved(orc_home: Path, task: str, text: str) -> bool:
    """Whether the Claude Code CLI has written ``text`` to a session file in ``task``'s agent home.

    The CLI writes its session files from a queue it drains every 100 ms, apart from running a
    tool; a test that kills an agent mid-tool and expects the resumed session to hold the tool
    call waits for this first, or the resume can start from a file that ends before the call.
    """
    sessions = (orc_home / "agent-home" / task).rglob("*.jsonl")
    return any(text in path.read_text(errors="replace") for path in sessions)


def descendants(pid: int) -> list[psutil.Process]:
    """Every live process that ``pid`` started, directly or not."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [c for c in children if is_alive(c)]


def is_alive(process: psutil.Process | int) -> bool:
    """Running and not a zombie; a process that ends while we look is simply not alive."""
    try:
        if isinstance(process, int):
            process = psutil.Process(process)
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_for(condition: Callable[[], Any], timeout: float = 15) -> None:
    """Poll ``condition`` every 50 ms until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


def signal_and_wait(
    process: subprocess.Popen[bytes], sig: int, timeout: float, logs: Callable[[], str]
) -> tuple[int, float]:
    """Send ``sig``; return (exit code, seconds it took). Fails, with the logs, if too slow."""
    started = time.monotonic()
    process.send_signal(sig)
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {timeout}s after signal {sig}:\n{logs()}") from None
    return code, time.monotonic() - started


# httpx.get() makes a client per call, and with it an SSL context that loads the CA bundle:
# ~50 ms of CPU per call here, most of a core for a loop that polls every 50 ms. One client for
# the tests' plain-HTTP requests to servers on loopback (never through the environment's proxy).
# Like httpx.get(), it keeps nothing between requests: no connection (each request is a new
# one) and no cookie (a jar that accepts none; cookies ignore the port, so one test's session
# would otherwise reach every server on 127.0.0.1).
LOOPBACK = httpx.Client(
    trust_env=False,
    limits=httpx.Limits(max_keepalive_connections=0),
    cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
)


class OrcServer:
    """A real `orc serve` subprocess in its own session, with its output kept in a file."""

    def __init__(
        self,
        env: dict[str, str],
        *extra_args: str,
        port: int | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.env = dict(env)
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = (log_dir or Path(env["HOME"])) / f"serve-{self.port}.log"
        self.args = ["serve", "--host", "127.0.0.1", "--port", str(self.port), *extra_args]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True, timeout: float = 30) -> OrcServer:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*ORC, *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_healthy(timeout)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"orc serve exited early:\n{self.logs()}")
            try:
                if LOOPBACK.get(self.base_url + "/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"orc serve not healthy after {timeout}s:\n{self.logs()}")

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return LOOPBACK.get(self.base_url + path, timeout=10, **kwargs)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.logs().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 10) -> tuple[int, float]:
        """Send ``sig``; return (exit code, seconds it took). Fails if it does not exit in time."""
        assert self.process is not None
        return signal_and_wait(self.process, sig, timeout, self.logs)

    def kill(self) -> None:
        """Kill everything this server started (cleanup; never fails)."""
        if self.process is None:
            return
        for proc in descendants(self.pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@contextlib.contextmanager
def moto_s3_server(log: Path, bucket: str = "orc-backups") -> Iterator[int]:
    """A local S3 (moto_server) on a free loopback port with ``bucket`` made; yields the port."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["moto_server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint, timeout=1, trust_env=False)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.2)
        httpx.put(f"{endpoint}/{bucket}", timeout=10, trust_env=False).raise_for_status()
        yield port
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def small_tmpfs(mount: Path, mib: int) -> Iterator[Path]:
    """A real ``mib`` MiB tmpfs at ``mount`` (a disk that fills), unmounted afterwards; the test
    is skipped, saying why, where mounting is not allowed (it needs root)."""
    import pytest

    mount.mkdir(exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); full disk not tested")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)
