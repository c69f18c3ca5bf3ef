"""A Docker engine of the suite's own, the Dockerfile's base image made locally, and the images.

The image tests (tests/test_image.py) build and run the repository's Dockerfile for real. No
container registry is reachable here, so:

- dockerd (Debian's docker.io) is started by the suite with its own data root and socket, and
  stopped by its PID at the end; IP forwarding, iptables and ``docker0`` are put back as they were.
- The Dockerfile's base (``python:3.11-slim-trixie``) cannot be pulled: a stand-in is made from
  Debian's packages with debootstrap, once per machine (a cached tarball), and imported under the
  base's tag. It carries this machine's extra CA certificates and pip configuration, because the
  machine's egress re-signs HTTPS; that belongs to the stand-in, never to the Dockerfile.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKER = "/usr/bin/docker"  # Debian's CLI: /usr/local/bin/docker (28.x) has no buildx here.
DOCKERD = "/usr/sbin/dockerd"
SUITE = "trixie"
BASE_PACKAGES = ("python3", "python3-pip", "python3-venv", "ca-certificates")
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
PIP_CONFIGS = (Path("/etc/pip.conf"), Path("/etc/xdg/pip"))


def cache_dir() -> Path:
    """Where the stand-in base's tarball survives between runs (ORC_TEST_CACHE to move it)."""
    explicit = os.environ.get("ORC_TEST_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "orc-test"


def base_image_tag(dockerfile: Path = REPO / "Dockerfile") -> str:
    """The image the Dockerfile builds FROM (its ``ARG PYTHON_IMAGE`` default)."""
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)", dockerfile.read_text(encoding="utf-8"), re.M)
    if match is None:
        raise AssertionError("the Dockerfile has no ARG PYTHON_IMAGE=… default")
    return match.group(1)


def debian_mirror() -> str:
    """The Debian mirror apt uses on this machine (debootstrap fetches the stand-in from it)."""
    sources = [*Path("/etc/apt/sources.list.d").glob("*"), Path("/etc/apt/sources.list")]
    for path in sources:
        with contextlib.suppress(OSError):
            for url in re.findall(r"https?://\S+", path.read_text(encoding="utf-8")):
                if url.rstrip("/").endswith("/debian") and "snapshot" not in url:
                    return url
    return "http://deb.debian.org/debian"


@dataclass
class HostNetwork:
    """What dockerd changes on the host: IP forwarding, iptables, the docker0 bridge."""

    ip_forward: str
    iptables: str
    forward_policy: str
    had_docker0: bool

    @classmethod
    def save(cls) -> HostNetwork:
        return cls(
            ip_forward=Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
            iptables=_run(["iptables-save"]).stdout,
            forward_policy=_run(["iptables", "-S", "FORWARD"]).stdout.split()[2],
            had_docker0=Path("/sys/class/net/docker0").exists(),
        )

    def restore(self) -> None:
        """Put everything back; tables dockerd created are emptied, the rest restored."""
        tables_before = set(re.findall(r"^\*(\S+)", self.iptables, re.M))
        tables_now = set(re.findall(r"^\*(\S+)", _run(["iptables-save"]).stdout, re.M))
        for table in sorted(tables_now - tables_before):
            _run(["iptables", "-t", table, "-F"], check=False)
            _run(["iptables", "-t", table, "-X"], check=False)
            rules = _run(["iptables", "-t", table, "-S"], check=False).stdout
            for chain in re.findall(r"^-P (\S+) ", rules, re.M):
                _run(["iptables", "-t", table, "-P", chain, "ACCEPT"], check=False)
        if self.iptables.strip():
            subprocess.run(["iptables-restore"], input=self.iptables, text=True, check=False)
        _run(["iptables", "-P", "FORWARD", self.forward_policy], check=False)
        Path("/proc/sys/net/ipv4/ip_forward").write_text(self.ip_forward + "\n")
        if not self.had_docker0 and Path("/sys/class/net/docker0").exists():
            _run(["ip", "link", "delete", "docker0"], check=False)


def _run(argv: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kwargs)


class DockerUnavailable(Exception):
    """dockerd cannot run on this machine; the message says why in one line."""


@dataclass
class Dockerd:
    """A dockerd of the suite's own: data root, exec root, pid file and socket in ``root``."""

    root: Path
    data_root: Path
    process: subprocess.Popen[bytes] | None = None
    network: HostNetwork | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """The environment for docker clients (docker, docker-compose, the scripts)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "ORC_"))}
        env.update(DOCKER_HOST=f"unix://{self.root}/sock", DOCKER_BUILDKIT="1")
        return env

    def start(self, timeout: float = 60) -> None:
        for tool in (DOCKERD, DOCKER, "/usr/sbin/debootstrap", "/usr/sbin/iptables"):
            if not os.access(tool, os.X_OK):
                raise DockerUnavailable(f"{tool} is not installed (apt-get install docker.io)")
        if os.geteuid() != 0:
            raise DockerUnavailable("dockerd and debootstrap need root")
        self.network = HostNetwork.save()
        log = (self.root / "dockerd.log").open("wb")
        self.process = subprocess.Popen(
            [
                DOCKERD,
                *("--data-root", str(self.data_root)),
                *("--exec-root", str(self.root / "exec")),
                *("--pidfile", str(self.root / "pid")),
                *("-H", f"unix://{self.root}/sock"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                self.stop()
                raise DockerUnavailable(f"dockerd exited: {self.last_log_line()}")
            if self.docker("version", check=False).returncode == 0:
                self.timings["dockerd start"] = round(time.monotonic() - started, 1)
                self.clear_leftovers()
                return
            time.sleep(0.2)
        self.stop()
        raise DockerUnavailable(f"dockerd did not answer in {timeout:.0f}s: {self.last_log_line()}")

    def clear_leftovers(self) -> None:
        """Containers, volumes and networks an interrupted run left in the kept data root."""
        leftover = self.docker("ps", "-aq", check=False).stdout.split()
        if leftover:
            self.docker("rm", "-f", *leftover, check=False)
        self.docker("volume", "prune", "-f", check=False)
        self.docker("network", "prune", "-f", check=False)

    def last_log_line(self) -> str:
        lines = (self.root / "dockerd.log").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(no output)"

    def stop(self) -> None:
        """Stop dockerd (by its PID) and its containers, then restore the host's network."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.network is not None:
            self.network.restore()
            self.network = None

    def docker(
        self, *args: str, check: bool = True, timeout: float = 600, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` against this engine; raises with its output when it fails."""
        result = subprocess.run(
            [DOCKER, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result


@contextlib.contextmanager
def machine_lock(timeout: float = 900) -> Iterator[None]:
    """One suite at a time may run dockerd here (docker0 and iptables are the host's)."""
    path = cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    with (path / "dockerd.lock").open("w") as lock:
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - started > timeout:
                    raise DockerUnavailable("another test run holds the machine's dockerd lock")
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _recipe_key() -> str:
    """Changes whenever the stand-in would come out differently (packages, certificates, pip)."""
    digest = hashlib.sha256(f"{SUITE} {BASE_PACKAGES} v1".encode())
    files = sorted(EXTRA_CA_DIR.glob("*.crt"))
    for config in PIP_CONFIGS:
        files += sorted(config.rglob("*")) if config.is_dir() else [config]
    for path in files:
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def base_rootfs() -> Path:
    """The stand-in base's root filesystem as a tarball, made once and then reused."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"base-{SUITE}-{_recipe_key()}.tar"
    if tarball.exists():
        return tarball
    root = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache))
    try:
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(BASE_PACKAGES),
                SUITE,
                str(root),
                debian_mirror(),
            ],
            timeout=900,
        )
        _customise(root)
        partial = tarball.with_suffix(".partial")
        _run(["tar", "-C", str(root), "-cf", str(partial), "."])
        partial.rename(tarball)
    finally:
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)
    for stale in cache.glob(f"base-{SUITE}-*.tar"):
        if stale != tarball:
            stale.unlink()
    return tarball


def _unmount_under(root: Path) -> None:
    """Unmount what debootstrap may have left mounted (/proc, /sys) before deleting the tree."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
        _run(["umount", "-l", mount], check=False)


def _customise(root: Path) -> None:
    """What makes a Debian rootfs stand in for the official Python image on this machine."""
    certificates = root / "usr/local/share/ca-certificates"
    certificates.mkdir(parents=True, exist_ok=True)
    for cert in EXTRA_CA_DIR.glob("*.crt"):
        shutil.copy2(cert, certificates / cert.name)
    _run(["chroot", str(root), "update-ca-certificates"])
    for marker in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    # The official image has its Python (and pip) in /usr/local/bin.
    bin_dir = root / "usr/local/bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, target in (
        ("python", "/usr/bin/python3"),
        ("python3", "/usr/bin/python3"),
        ("pip", "/usr/bin/pip3"),
        ("pip3", "/usr/bin/pip3"),
    ):
        (bin_dir / name).symlink_to(target)
    for config in PIP_CONFIGS:
        if config.is_dir():
            shutil.copytree(config, root / config.relative_to("/"), dirs_exist_ok=True)
        elif config.is_file():
            shutil.copy2(config, root / config.relative_to("/"))
    for leftovers in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (root / leftovers).glob("*"):
            if path.is_file():
                path.unlink()


def import_base(dockerd: Dockerd, tarball: Path, tag: str) -> None:
    """``docker import`` the stand-in under the base's tag, with the official image's ENV."""
    dockerd.docker(
        "import",
        *("--change", "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"),
        *("--change", "ENV LANG=C.UTF-8"),
        *("--change", 'CMD ["python3"]'),
        str(tarball),
        tag,
    )


ORC_IMAGE = "orc:test"
LITESTREAM_IMAGE = "orc:test-litestream"
TOKEN = "image-test-token-" + "y" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Container:
    """A container of the suite's engine, by name."""

    dockerd: Dockerd
    name: str

    def inspect(self, template: str) -> str:
        return self.dockerd.docker("inspect", "-f", template, self.name).stdout.strip()

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.dockerd.docker("exec", self.name, *argv, check=check)

    def logs(self) -> str:
        result = self.dockerd.docker("logs", self.name, check=False)
        return (result.stdout + result.stderr)[-6000:]

    @property
    def url(self) -> str:
        """The published 8080 on the host's loopback."""
        address = self.dockerd.docker("port", self.name, "8080/tcp").stdout.split()[0]
        return "http://" + address

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> float:
        """Seconds until ``predicate()``; fails with the container's log after ``timeout``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            with contextlib.suppress(httpx.HTTPError):
                if predicate():
                    return time.monotonic() - started
            time.sleep(0.25)
        raise AssertionError(f"{what}: not within {timeout:.0f}s\n{self.logs()}")

    def wait_exit(self, timeout: float) -> int:
        self.wait_for(lambda: self.inspect("{{.State.Running}}") == "false", timeout, "exit")
        return int(self.inspect("{{.State.ExitCode}}"))

    def health_ok(self) -> bool:
        return httpx.get(self.url + "/api/health", timeout=2).status_code == 200


@dataclass
class Images:
    """The two targets of the repository's Dockerfile, built by the suite's engine."""

    dockerd: Dockerd
    orc: str = ORC_IMAGE
    litestream: str = LITESTREAM_IMAGE


def _timed(dockerd: Dockerd, what: str, action: Callable[[], object]) -> None:
    started = time.monotonic()
    action()
    dockerd.timings[what] = round(time.monotonic() - started, 1)


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    """The suite's own engine, for every image test (they share one xdist worker)."""
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        # Socket and exec root under the cache too: other test runs on this machine clean /tmp.
        root = cache_dir() / "dockerd-run"
        # The data root (images, build cache) is kept between runs like the base's tarball:
        # a rebuild reuses unchanged layers as a user's does. ORC_TEST_DOCKER_FRESH=1: cold.
        data_root = cache_dir() / "dockerd-data"
        if os.environ.get("ORC_TEST_DOCKER_FRESH") == "1":
            shutil.rmtree(data_root, ignore_errors=True)
        engine = Dockerd(root, data_root)
        try:
            stack.enter_context(machine_lock())
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            engine.start()
        except DockerUnavailable as exc:
            pytest.skip(f"no Docker engine here: {exc}")
        try:
            yield engine
        finally:
            engine.clear_leftovers()
            engine.stop()
            engine.timings["all image tests"] = round(time.monotonic() - started, 1)
            (cache_dir() / "last-timings.txt").write_text(
                "".join(f"{k}: {v}\n" for k, v in engine.timings.items())
            )


@pytest.fixture(scope="session")
def images(dockerd: Dockerd) -> Images:
    """The stand-in base imported, then both targets built exactly as docs/deployment.md says."""
    tarball: list[Path] = []
    _timed(
        dockerd,
        "base stand-in tarball (cached after the first run)",
        lambda: tarball.append(base_rootfs()),
    )
    _timed(dockerd, "base import", lambda: import_base(dockerd, tarball[0], base_image_tag()))
    built = Images(dockerd)
    build = ("build", "--progress=plain")
    _timed(dockerd, "build orc", lambda: dockerd.docker(*build, "-t", built.orc, str(REPO)))
    _timed(
        dockerd,
        "build litestream (after orc)",
        lambda: dockerd.docker(*build, "--target", "litestream", "-t", built.litestream, str(REPO)),
    )
    _timed(dockerd, "build orc warm", lambda: dockerd.docker(*build, "-t", built.orc, str(REPO)))
    return built
