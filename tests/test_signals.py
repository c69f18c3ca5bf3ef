"""`orc serve` stops cleanly on SIGTERM and SIGINT, whenever the signal arrives.

Real processes, no mocks. Every test checks three things: the launcher exits in time, with
code 0, and nothing it started is left running. Its children run in their own sessions, so
they are looked for by their environment (ORC_HOME) and command line as well as by parentage.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support import ORC, OrcServer, descendants, free_port

EXIT_TIMEOUT = 10.0
# SIGKILLed processes take a moment to vanish from the process table.
VANISH_TIMEOUT = 3.0


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def orc_processes(home: str, port: int | None = None) -> list[psutil.Process]:
    """Live processes that belong to the orc whose ORC_HOME is ``home`` (or that use ``port``)."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmdline = proc.cmdline()
            named = any(home in arg for arg in cmdline) or (
                port is not None and str(port) in cmdline
            )
            if named or proc.environ().get("ORC_HOME") == home:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def assert_nothing_left(home: str, port: int, started: list[psutil.Process]) -> None:
    """Neither the processes seen before the signal nor any other of this orc's survive."""
    deadline = time.monotonic() + VANISH_TIMEOUT
    while True:
        left = [p for p in started if _alive(p)]
        left += [p for p in orc_processes(home, port) if p not in left]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    described = []
    for proc in left:
        with contextlib.suppress(psutil.Error):
            described.append(f"{proc.pid} {proc.status()} {proc.cmdline()}")
    assert not left, "processes left running:\n" + "\n".join(described)


def catches(pid: int, sig: signal.Signals) -> bool:
    """Whether process ``pid`` has installed a handler for ``sig`` (Linux /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    return False


def wait_until_handled(server: OrcServer, sig: signal.Signals, timeout: float = 20) -> None:
    """Wait until `orc serve` handles ``sig``: before that, the default action would kill it."""
    deadline = time.monotonic() + timeout
    while not catches(server.pid, sig):
        assert server.process is not None
        if server.process.poll() is not None:
            raise AssertionError(f"orc serve exited early:\n{server.logs()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"orc serve did not handle {sig.name} within {timeout}s")
        time.sleep(0.005)


def everything_started_by(server: OrcServer) -> list[psutil.Process]:
    """The launcher and every process below it, right now."""
    return [psutil.Process(server.pid), *descendants(server.pid)]


@pytest.fixture
def home(sqlite_env: dict[str, str]) -> Iterator[str]:
    """This test's ORC_HOME; whatever still runs with it afterwards is killed."""
    home = sqlite_env["ORC_HOME"]
    yield home
    for proc in orc_processes(home):
        with contextlib.suppress(psutil.Error):
            proc.kill()


def stop_and_check(server: OrcServer, home: str, sig: signal.Signals = signal.SIGTERM) -> float:
    """Send ``sig``; assert exit 0 within the limit and nothing left. Returns the seconds taken."""
    started = everything_started_by(server)
    code, seconds = server.terminate(sig, timeout=EXIT_TIMEOUT)
    assert code == 0, f"exit code {code} after {sig.name}:\n{server.logs()}"
    assert_nothing_left(home, server.port, started)
    return seconds


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("delay", [0.0, 0.2, 0.5, 1.0, 2.0])
def test_sigterm_during_start_up(server_factory, sqlite_env, home, workers, delay):
    """Whenever SIGTERM lands (migrations, children importing, Sanic waiting for its workers)."""
    server = server_factory(sqlite_env, "--workers", str(workers)).start(wait=False)
    wait_until_handled(server, signal.SIGTERM)
    time.sleep(delay)
    stop_and_check(server, home)


def test_sigterm_before_signals_are_handled(server_factory, sqlite_env, home):
    """A signal during interpreter start-up kills orc by the default action; nothing is left."""
    server = server_factory(sqlite_env, "--workers", "2").start(wait=False)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    try:
        code = server.process.wait(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"orc serve did not exit:\n{server.logs()}") from None
    assert code in (0, -signal.SIGTERM), server.logs()
    assert_nothing_left(home, server.port, [])


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load(server_factory, sqlite_env, home, workers):
    server = server_factory(sqlite_env, "--workers", str(workers)).start()
    stop = threading.Event()
    answered = [0]
    lock = threading.Lock()

    def hammer(path: str) -> None:
        with httpx.Client(base_url=server.base_url, timeout=2) as client:
            while not stop.is_set():
                try:
                    response = client.get(path)
                except httpx.HTTPError:
                    time.sleep(0.01)
                    continue
                if response.status_code == 200:
                    with lock:
                        answered[0] += 1

    paths = ["/api/health", "/api/health/ready"] * 2
    threads = [threading.Thread(target=hammer, args=(p,), daemon=True) for p in paths]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 10
        while answered[0] < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert answered[0] >= 50, f"only {answered[0]} answers under load:\n{server.logs()}"
        stop_and_check(server, home)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
    assert not any(t.is_alive() for t in threads)


@pytest.mark.parametrize(("workers", "when"), [(1, "running"), (2, "running"), (2, "starting")])
def test_ctrl_c_exits_0(server_factory, sqlite_env, home, workers, when):
    """Ctrl-C: SIGINT to the launcher's whole foreground process group."""
    server = server_factory(sqlite_env, "--workers", str(workers))
    if when == "running":
        server.start()
    else:
        server.start(wait=False)
        # Python handles SIGINT from its first instant (KeyboardInterrupt, exit 130); orc
        # installs its SIGTERM and SIGINT handlers together, so wait for the SIGTERM one.
        wait_until_handled(server, signal.SIGTERM)
        time.sleep(0.5)
    started = everything_started_by(server)
    t0 = time.monotonic()
    os.killpg(server.pid, signal.SIGINT)  # start(): own session, so pgid == pid
    assert server.process is not None
    try:
        code = server.process.wait(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"no exit within {EXIT_TIMEOUT}s of SIGINT:\n{server.logs()}"
        ) from None
    took = time.monotonic() - t0
    assert code == 0, f"exit code {code} after SIGINT ({took:.1f}s):\n{server.logs()}"
    assert_nothing_left(home, server.port, started)


@pytest.mark.parametrize("workers", [1, 2])
def test_launching_shell_survives_sigterm_during_start_up(sqlite_env, home, tmp_path, workers):
    """A shell starts orc in the background and stops it while Sanic still starts its workers.

    The Sanic trap can SIGKILL the launching process group: the shell must live on, see
    orc's exit code 0 and finish its script.
    """
    port = free_port()
    log = tmp_path / "serve.log"
    serve = shlex.join(
        [*ORC, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    )
    # Migrations are logged once orc handles signals; one more second lands in Sanic's start-up.
    script = f"""
{serve} >{shlex.quote(str(log))} 2>&1 &
pid=$!
for _ in $(seq 400); do grep -q orc.migrate {shlex.quote(str(log))} && break; sleep 0.05; done
sleep 1
kill -TERM $pid
wait $pid
echo rc=$?
echo shell-done
"""
    shell = subprocess.Popen(
        ["bash", "-c", script],
        env=sqlite_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = shell.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
        shell.communicate()
        raise AssertionError(f"the shell did not finish:\n{log.read_text()}") from None
    logs = log.read_text(errors="replace")
    assert shell.returncode == 0, f"shell exit {shell.returncode}\n{out}\n{err}\n{logs}"
    assert out.split() == ["rc=0", "shell-done"], f"{out}\n{err}\n{logs}"
    assert "orc.migrate" in logs
    assert_nothing_left(home, port, [])
