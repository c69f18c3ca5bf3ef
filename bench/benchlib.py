"""Helpers shared by the benchmark scripts in bench/ (start, probe and stop real servers).

Not a benchmark itself. The scripts import it as ``benchlib`` because Python puts the script's
own directory (bench/) first on sys.path.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
HOST = "127.0.0.1"


def python_exe() -> str:
    """The interpreter to run servers with: the repo's venv if present, else this one."""
    venv = REPO_DIR / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def orc_command() -> list[str]:
    """The ``orc`` console script next to that interpreter (``python -m orc`` as a fallback)."""
    script = Path(python_exe()).parent / "orc"
    return [str(script)] if script.exists() else [python_exe(), "-m", "orc"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def clean_env(orc_home: Path, user_home: Path, log_level: str = "warning") -> dict[str, str]:
    """This environment without any ORC_*/DATABASE_URL*/PROMETHEUS_* variable, plus ours."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ORC_", "DATABASE_URL", "PROMETHEUS_MULTIPROC"))
    }
    user_home.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(user_home),
        ORC_HOME=str(orc_home),
        ORC_LOG_LEVEL=log_level,
        ORC_LOG_FORMAT="json",
        # Probes (/api/health, the benchmarks' favourite) are measured with their lines logged.
        ORC_ACCESS_LOG_PROBES="true",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def http_status(port: int, path: str = "/api/health", timeout: float = 1.0) -> int | None:
    """The status of one GET on 127.0.0.1:port, or None when nothing answers."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


@dataclass
class Server:
    """A server process started in its own session, its output kept in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    cwd: Path | None = None
    # CPUs the server (and every process it starts) may run on; None: any.
    cpus: set[int] | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    # Every process seen under the server, so that none can outlive stop().
    seen_pids: set[int] = field(default_factory=set)

    def start(self) -> Server:
        with self.log_path.open("ab") as log:
            self.started_at = time.perf_counter()
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=None if self.cpus is None else self._pin,
            )
        return self

    def _pin(self) -> None:
        assert self.cpus is not None
        os.sched_setaffinity(0, self.cpus)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def exited(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def descendant_pids(self) -> list[int]:
        """Pids of every live process below the server (reads /proc; no psutil needed)."""
        parents: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            # Field 4 (ppid) comes after the ")" that closes the command name.
            fields = stat[stat.rfind(b")") + 2 :].split()
            if fields[0] == b"Z":
                continue
            parents.setdefault(int(fields[1]), []).append(int(entry))
        found: list[int] = []
        todo = [self.pid]
        while todo:
            kids = parents.get(todo.pop(), [])
            found.extend(kids)
            todo.extend(kids)
        self.seen_pids.update(found)
        return found

    def wait_healthy(
        self, path: str = "/api/health", timeout: float = 60.0, interval: float = 0.005
    ) -> float:
        """Poll until GET path answers 200; return seconds since start(). Raises on failure."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.exited():
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            if http_status(self.port, path) == 200:
                return time.perf_counter() - self.started_at
            time.sleep(interval)
        raise RuntimeError(f"{self.name} not healthy after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> float:
        """SIGTERM the server, wait for it, then make sure nothing it started is left.

        Returns the seconds the server took to exit after SIGTERM.
        """
        if self.process is None:
            return 0.0
        self.descendant_pids()
        started = time.perf_counter()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"  ! {self.name} ignored SIGTERM for {timeout:.0f}s; killing it")
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.process.wait()
        took = time.perf_counter() - started
        # The launcher stops its children itself; anything still alive now is a leak.
        deadline = time.perf_counter() + 5
        leftovers = [p for p in self.seen_pids if _alive(p)]
        while leftovers and time.perf_counter() < deadline:
            time.sleep(0.05)
            leftovers = [p for p in leftovers if _alive(p)]
        for pid in leftovers:
            print(f"  ! {self.name}: process {pid} outlived the server; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return took

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds used so far by these processes (those still alive)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / tick


def load_note() -> str:
    """One line on how busy the machine is: other load skews every figure here."""
    one, five, _ = os.getloadavg()
    return f"machine: {os.cpu_count()} CPUs, load average {one:.2f} (1 min), {five:.2f} (5 min)"


def machine_cpu_seconds() -> tuple[float, float]:
    """CPU seconds every process of the machine used since boot (user, nice, system, irq,
    softirq), and the seconds the hypervisor gave the VM's CPUs to others (steal)."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"


def orc_server(
    data_dir: Path, port: int, extra: Sequence[str] = (), log_level: str = "warning", tag: str = ""
) -> Server:
    """An ``orc serve`` on 127.0.0.1:port with ORC_HOME=data_dir/home (not started)."""
    env = clean_env(data_dir / "home", data_dir / "user", log_level)
    argv = [*orc_command(), "serve", "--host", HOST, "--port", str(port), *extra]
    name = "orc serve " + " ".join(extra) if extra else "orc serve"
    log_path = data_dir / f"orc-serve{tag}-{port}.log"
    return Server(name.strip(), argv, env, port, log_path, cwd=data_dir)


def bare_sanic_server(data_dir: Path, port: int) -> Server:
    """bench/bare_sanic.py (a one-route Sanic app, single process) on 127.0.0.1:port."""
    env = clean_env(data_dir / "home", data_dir / "user")
    argv = [python_exe(), str(BENCH_DIR / "bare_sanic.py"), "--host", HOST, "--port", str(port)]
    log_path = data_dir / f"bare-sanic-{port}.log"
    return Server("bare sanic", argv, env, port, log_path, cwd=data_dir)


def split_cpus() -> tuple[set[int], set[int]]:
    """(server CPUs, load-generator CPUs) for --pin: the last CPU for the server."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin needs at least 2 CPUs")
    return {cpus[-1]}, set(cpus[:-1])


def summary(values: Sequence[float], unit: str = "s", digits: int = 3) -> str:
    """``median X (min A, max B, n=N)``."""
    if not values:
        return "no data"
    f = f"{{:.{digits}f}}{unit}"
    return (
        f"median {f.format(statistics.median(values))} "
        f"(min {f.format(min(values))}, max {f.format(max(values))}, n={len(values)})"
    )
