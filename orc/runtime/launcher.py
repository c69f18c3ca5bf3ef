"""``orc serve``: migrate once, then run the API process and the job worker, supervised.

Each child runs in its own session, so a signal meant for one never reaches the shell
that started orc, and a child that hangs (Sanic can spin forever when SIGTERM arrives
during its start-up) is killed with its whole process group when the grace period ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from orc.config import METRICS_DIR_ENV, ConfigError, Settings
from orc.runtime.api_gate import API_GATE_ENV

log = logging.getLogger("orc.serve")

POLL_SECONDS = 0.1
# Before the API listens there is nothing to drain: stop quickly.
STARTUP_GRACE_SECONDS = 2.0
# The API's own graceful shutdown takes up to ORC_SHUTDOWN_TIMEOUT; let it finish before a kill.
KILL_MARGIN_SECONDS = 2.0
RESTART_BACKOFF_MAX_SECONDS = 30.0
# A worker that ran this long before dying is restarted at once, not backed off.
STABLE_UPTIME_SECONDS = 60.0
# The job worker starts when the API listens, or this long after the API was released if the
# launcher cannot see it listening (an address it cannot connect to).
WORKER_START_MAX_DELAY_SECONDS = 10.0


PR_SET_PDEATHSIG = 1
# Held back (blocked, so pending, never lost) in a new job worker until it can act on them:
# arriving during its start-up they printed a KeyboardInterrupt traceback, or left it hanging.
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


def _die_with_parent(sig: signal.Signals) -> None:
    """In a new child: ask Linux to send ``sig`` when the launcher dies, even by SIGKILL.

    Children run in their own sessions, so nothing else reaches them when the launcher is
    killed; an orphaned API would keep the port and every restarted launcher would fail.
    """
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent:  # the launcher died before prctl took effect
        os.kill(os.getpid(), sig)


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    stop_signal: signal.Signals
    # Sent when the launcher dies: the API at once (the restarted launcher needs its port),
    # the worker gracefully (its running job finishes).
    orphan_signal: signal.Signals = signal.SIGKILL
    # The child unblocks STOP_SIGNALS itself once its handlers are in place (orc worker does).
    hold_stop_signals: bool = False
    # File descriptors the child inherits (the API's start gate).
    pass_fds: tuple[int, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None

    def start(self) -> None:
        orphan_signal = self.orphan_signal
        hold = self.hold_stop_signals

        def in_child() -> None:
            if hold:
                signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            if sys.platform == "linux":
                _die_with_parent(orphan_signal)

        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            start_new_session=True,
            preexec_fn=in_child,
            pass_fds=self.pass_fds,
        )
        self.started_at = time.monotonic()
        self.restart_at = None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def send(self, sig: signal.Signals) -> None:
        if self.running:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def kill_group(self) -> None:
        """SIGKILL the child's whole session (its own workers included)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def schedule_restart(self, now: float) -> float:
        """Back off 0.5, 1, 2 … 30 s between crashes; a long-lived worker restarts at once."""
        if now - self.started_at >= STABLE_UPTIME_SECONDS:
            self.failures = 0
        delay = min(0.5 * 2**self.failures, RESTART_BACKOFF_MAX_SECONDS)
        self.failures += 1
        self.restart_at = now + delay
        return delay


def probe_address(host: str) -> str:
    """Where to connect to reach a server listening on ``host``."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def check_port_free(host: str, port: int) -> None:
    """Fail early, in one line, when another process already listens on host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}); "
                "stop the other server or choose another port with --port or ORC_PORT"
            ) from None


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((probe_address(host), port), timeout=0.2):
            return True
    except OSError:
        return False


class StopRequest:
    """Turns SIGTERM/SIGINT into an event; a second signal asks to stop at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.urgent = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            self.urgent = True
        self.event.set()


def child_env(settings: Settings, metrics_dir: Path) -> dict[str, str]:
    """The environment of every child: the effective settings that the CLI may have changed."""
    env = dict(os.environ)
    env.update(
        ORC_HOME=str(settings.home),
        ORC_HOST=settings.host,
        ORC_PORT=str(settings.port),
        ORC_WORKERS=str(settings.workers),
        DATABASE_URL=settings.database_url,
    )
    env.pop("DATABASE_URL_FILE", None)
    env.pop(METRICS_DIR_ENV, None)
    if settings.workers > 1:
        # Several API processes share their samples through files; one process keeps them
        # in memory, which is cheaper per request.
        env[METRICS_DIR_ENV] = str(metrics_dir)
    return env


def _stop_children(children: list[Child], grace: float, stop: StopRequest) -> None:
    for child in children:
        child.send(child.stop_signal)
    deadline = time.monotonic() + grace
    while any(c.running for c in children) and time.monotonic() < deadline and not stop.urgent:
        time.sleep(POLL_SECONDS)
    for child in children:
        if child.running:
            log.warning("%s did not stop within %.0fs; killing it", child.name, grace)
        child.kill_group()


@dataclass
class HeldApi:
    """The API process, started before migrations and held at its start gate.

    It imports Sanic, the ORM and the routes (about half of orc's start-up) while the launcher
    migrates in another process; it touches nothing (database, secret key, port) until
    ``release``. ``discard`` ends it when start-up fails or is stopped: it has served nothing.
    """

    api: Child
    gate: int
    metrics_dir: Path

    def release(self) -> None:
        """Let the API open the database and listen."""
        with contextlib.suppress(OSError):  # it died meanwhile: serve() reports its exit code
            os.write(self.gate, b"1")
        os.close(self.gate)

    def discard(self) -> None:
        os.close(self.gate)  # end of file: the API exits at once if still waiting
        self.api.kill_group()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)


def hold_api(settings: Settings) -> HeldApi:
    """Start the API process now, held before it reads anything but its settings."""
    metrics_dir = Path(tempfile.mkdtemp(prefix="orc-metrics-"))
    read_end, write_end = os.pipe()
    os.set_inheritable(read_end, True)
    env = dict(child_env(settings, metrics_dir), **{API_GATE_ENV: str(read_end)})
    api = Child("api", [sys.executable, "-m", "orc", "_api"], env, signal.SIGTERM)
    api.pass_fds = (read_end,)
    try:
        api.start()
    finally:
        os.close(read_end)
    return HeldApi(api, write_end, metrics_dir)


def serve(settings: Settings, run_worker: bool, stop: StopRequest, held: HeldApi) -> int:
    """Release the held API, start the job worker once the API listens, and run until a stop
    signal (exit 0) or until the API process dies (its exit code)."""
    api = held.api
    children = [api]
    worker: Child | None = None
    held.release()
    if run_worker:
        worker = worker_child(child_env(settings, held.metrics_dir))
        children.append(worker)
    listening = False
    # The worker starts once the API listens: importing, it would take a CPU from the API's
    # start-up (the first 200 came later by its import time on a 2-CPU machine).
    worker_due = time.monotonic() + WORKER_START_MAX_DELAY_SECONDS
    try:
        while not stop.event.wait(POLL_SECONDS):
            if not listening and port_open(settings.host, settings.port):
                listening = True
                log.info("orc is serving on http://%s:%d", settings.host, settings.port)
            due = listening or time.monotonic() >= worker_due
            if worker is not None and worker.process is None and due:
                worker.start()
            code = api.exit_code()
            if code is not None:
                log.error("the API process exited with code %d; stopping", code)
                return code or 1
            if worker is not None and worker.exit_code() is not None:
                _supervise_worker(worker)
        return 0
    finally:
        grace = (
            settings.shutdown_timeout + KILL_MARGIN_SECONDS if listening else STARTUP_GRACE_SECONDS
        )
        _stop_children(children, grace, stop)
        shutil.rmtree(held.metrics_dir, ignore_errors=True)


def worker_child(env: dict[str, str]) -> Child:
    """The job worker: SIGINT stops it gracefully (running jobs finish), also when the launcher
    dies; a stop signal during its start-up waits until it can act on it."""
    argv = [sys.executable, "-m", "orc", "worker"]
    return Child("worker", argv, env, signal.SIGINT, signal.SIGINT, hold_stop_signals=True)


def _supervise_worker(worker: Child) -> None:
    now = time.monotonic()
    if worker.restart_at is None:
        delay = worker.schedule_restart(now)
        log.warning(
            "the job worker exited with code %s; restarting it in %.1fs", worker.exit_code(), delay
        )
    elif now >= worker.restart_at:
        worker.start()
        log.info("the job worker was restarted")
