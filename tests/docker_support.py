"""A Docker engine of the suite's own, the Dockerfile's base image made locally, and the images.

The image tests (tests/test_image*.py) build and run the repository's Dockerfile for real. No
container registry is reachable here, so:

- dockerd (Debian's docker.io) is started by the suite with its own data root and socket, and
  stopped by its PID at the end; IP forwarding, iptables and ``docker0`` are put back as they were.
  One engine serves every xdist worker of a run (see "Groups" below): the first worker that needs
  it starts it, the last one that leaves stops it.
- The Dockerfile's base (``python:3.11-slim-trixie``) cannot be pulled: a stand-in is made from
  Debian's packages with debootstrap, once per machine (a cached tarball), and imported under the
  base's tag. It carries this machine's extra CA certificates and pip configuration, because the
  machine's egress re-signs HTTPS; that belongs to the stand-in, never to the Dockerfile.

Groups. Most of an image test's time is waiting (a container starting, a health interval, a
scheduled backup): the tests are split in a few xdist groups (``scripts/test`` runs
``--dist loadgroup``) whose waits overlap, in separate workers, on the one engine and the images
built once (under a file lock). A new image test:

- joins the group of the tests it shares containers or fixed names with: everything that brings
  a ``deploy/*.yml`` file up is in ``GROUP_COMPOSE`` (the files fix ``container_name: orc``);
- or, if it waits long on containers of its own, takes a group of its own named ``docker-…``
  (xdist starts the groups first, the largest first);
- names its containers and volumes uniquely, publishes ports on ``127.0.0.1::PORT`` or a
  ``free_port()``, removes only what it made, and never removes or re-tags ``ORC_IMAGE`` or
  ``LITESTREAM_IMAGE``: other groups are running them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support import LOOPBACK

REPO = Path(__file__).resolve().parent.parent
DOCKER = "/usr/bin/docker"  # Debian's CLI: /usr/local/bin/docker (28.x) has no buildx here.
DOCKERD = "/usr/sbin/dockerd"
SUITE = "trixie"
BASE_PACKAGES = ("python3", "python3-pip", "python3-venv", "ca-certificates")
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
PIP_CONFIGS = (Path("/etc/pip.conf"), Path("/etc/xdg/pip"))

# The xdist groups of the image tests (see "Groups" above).
GROUP_IMAGE = "docker"  # tests/test_image.py: the image and `docker run`
GROUP_COMPOSE = "docker-compose"  # deploy/*.yml up, scripts/upgrade and scripts/rollback
GROUP_IMAGES = "docker-images"  # the litestream target's replica, the air-gap scripts
GROUP_RUN_CRASH = "docker-run-crash"  # a task run through docker kill / docker start


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
    """A dockerd of the suite's own: data root, exec root, pid file and socket in ``root``.

    ``isolated``: an engine that leaves the host's network alone (no iptables, no IP forwarding,
    its own bridge instead of ``docker0``), so it can run beside the suite's main one; its
    containers run without network. Not ``--bridge=none``: dockerd then deletes ``docker0``,
    which the main engine's containers use.
    """

    root: Path
    data_root: Path
    isolated: bool = False
    process: subprocess.Popen[bytes] | None = None
    network: HostNetwork | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        """The isolated engine's own bridge (interface names: at most 15 characters)."""
        return "orc" + hashlib.sha256(str(self.root).encode()).hexdigest()[:8]

    @property
    def env(self) -> dict[str, str]:
        """The environment for docker clients (docker, docker-compose, the scripts)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "ORC_"))}
        env.update(DOCKER_HOST=f"unix://{self.root}/sock", DOCKER_BUILDKIT="1")
        return env

    def gateway(self) -> str:
        """The default bridge's address on the host: where a container reaches a server the test
        runs on the host. The network's IPAM config names it, except on a fresh data root's first
        start (dockerd 20.10 left it empty there, failing three image tests on a new machine), so
        the address of ``docker0`` itself is the fallback."""
        ipam = self.docker(
            "network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}"
        ).stdout.strip()
        if ipam:
            return ipam
        shown = json.loads(_run(["ip", "-j", "-4", "addr", "show", "docker0"]).stdout or "[]")
        addresses = [a["local"] for link in shown for a in link.get("addr_info", ())]
        if not addresses:
            raise AssertionError("the default bridge has no gateway and docker0 no IPv4 address")
        return addresses[0]

    def start(self, timeout: float = 60) -> None:
        for tool in (DOCKERD, DOCKER, "/usr/sbin/debootstrap", "/usr/sbin/iptables"):
            if not os.access(tool, os.X_OK):
                raise DockerUnavailable(f"{tool} is not installed (apt-get install docker.io)")
        if os.geteuid() != 0:
            raise DockerUnavailable("dockerd and debootstrap need root")
        if not self.isolated:
            self.network = HostNetwork.save()
        isolation = (f"--bridge={self.bridge}", "--iptables=false", "--ip-forward=false")
        if self.isolated:
            _run(["ip", "link", "delete", self.bridge], check=False)  # a killed run's
            _run(["ip", "link", "add", "name", self.bridge, "type", "bridge"])
        log = (self.root / "dockerd.log").open("wb")
        self.process = subprocess.Popen(
            [
                DOCKERD,
                *("--data-root", str(self.data_root)),
                *("--exec-root", str(self.root / "exec")),
                *("--pidfile", str(self.root / "pid")),
                *("-H", f"unix://{self.root}/sock"),
                *(isolation if self.isolated else ()),
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
        """Containers, volumes, networks an interrupted run left in the kept data root, and the
        untagged images earlier builds left there (the build cache stays)."""
        leftover = self.docker("ps", "-aq", check=False).stdout.split()
        if leftover:
            self.docker("rm", "-f", *leftover, check=False)
        for kind in ("volume", "network", "image"):
            self.docker(kind, "prune", "-f", check=False)

    def last_log_line(self) -> str:
        lines = (self.root / "dockerd.log").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(no output)"

    def stop(self) -> None:
        """Stop dockerd by its PID (whichever worker started it), then restore the network."""
        pid = self.process.pid if self.process is not None else _read_pid(self.root / "pid")
        if pid is not None and _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, self.process, timeout=60):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                _wait_gone(pid, self.process, timeout=10)
        if self.network is not None:
            self.network.restore()
            self.network = None
        if self.isolated:
            _run(["ip", "link", "delete", self.bridge], check=False)

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


def _read_pid(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().strip())
    return None


def _alive(pid: int) -> bool:
    """Running (a zombie is not: dockerd may be the exited child of another worker)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _wait_gone(pid: int, child: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=timeout)
            return True
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    return False


@contextlib.contextmanager
def _flock(path: Path, mode: int, timeout: float, busy: str) -> Iterator[None]:
    """``flock(path, mode)`` for the block; DockerUnavailable(busy) after ``timeout``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as lock:
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(lock, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - started > timeout:
                    raise DockerUnavailable(busy) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _is(path: Path, text: str) -> bool:
    with contextlib.suppress(OSError):
        return path.read_text() == text
    return False


def run_id() -> str:
    """The pytest run this process belongs to: xdist's workers of one run share the id."""
    return os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid-{os.getpid()}"


@dataclass
class SharedEngine:
    """The one dockerd of a test run, shared by its xdist workers and by no other run.

    Every worker that uses it holds a shared lock on ``dockerd.lock`` (another run's exclusive
    lock, or its leases, make it wait) and a lease file named by its PID. Under the short
    ``dockerd-state.lock`` the first worker starts dockerd and records the run and the host's
    network in ``owner.json``; the last to leave stops dockerd by its PID and restores the
    network. A worker that died leaves a lease whose PID is gone: it does not count.
    """

    root: Path
    data_root: Path

    @property
    def owner_file(self) -> Path:
        return self.root.parent / "dockerd-owner.json"

    @property
    def leases(self) -> Path:
        return self.root.parent / "dockerd-leases"

    def live_leases(self) -> list[Path]:
        self.leases.mkdir(parents=True, exist_ok=True)
        live = []
        for lease in self.leases.iterdir():
            pid = _read_pid(lease)
            if pid is not None and _alive(pid):
                live.append(lease)
            else:
                lease.unlink(missing_ok=True)
        return live

    def owner(self) -> dict | None:
        with contextlib.suppress(OSError, ValueError):
            return json.loads(self.owner_file.read_text())
        return None

    def engine(self) -> Dockerd:
        return Dockerd(self.root, self.data_root)

    def join(self) -> Dockerd | None:
        """This run's engine with a lease taken (started if nobody uses it); None: another run's."""
        with _flock(self.root.parent / "dockerd-state.lock", fcntl.LOCK_EX, 120, "state lock"):
            others = [p for p in self.live_leases() if p.name != str(os.getpid())]
            owner = self.owner()
            if others and (owner is None or owner["run"] != run_id()):
                return None
            engine = self.engine()
            if not others:
                self.stop(owner)  # what a killed run left running
                shutil.rmtree(self.root, ignore_errors=True)
                self.root.mkdir(parents=True)
                engine.start()
                (cache_dir() / "last-timings.txt").write_text("")
                assert engine.network is not None
                self.owner_file.write_text(
                    json.dumps(
                        {
                            "run": run_id(),
                            "started": time.time(),
                            "network": asdict(engine.network),
                        }
                    )
                )
                engine.network = None  # restored by whoever stops it
            (self.leases / str(os.getpid())).write_text(str(os.getpid()))
            return engine

    def leave(self, timings: dict[str, float]) -> None:
        """Give the lease back; the last worker out stops dockerd and restores the network."""
        with _flock(self.root.parent / "dockerd-state.lock", fcntl.LOCK_EX, 120, "state lock"):
            (self.leases / str(os.getpid())).unlink(missing_ok=True)
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            lines = [f"{worker} {k}: {v}\n" for k, v in timings.items()]
            if not self.live_leases():
                owner = self.owner()
                self.engine().clear_leftovers()
                self.stop(owner)
                if owner is not None:
                    lines.append(f"engine up: {round(time.time() - owner['started'], 1)}\n")
            with (cache_dir() / "last-timings.txt").open("a") as out:
                out.writelines(lines)

    def stop(self, owner: dict | None) -> None:
        engine = self.engine()
        if owner is not None:
            engine.network = HostNetwork(**owner["network"])
        engine.stop()
        self.owner_file.unlink(missing_ok=True)


@contextlib.contextmanager
def shared_engine(timeout: float = 900) -> Iterator[Dockerd]:
    """This run's engine for the block; waits while another test run on this machine has one."""
    shared = SharedEngine(cache_dir() / "dockerd-run", cache_dir() / "dockerd-data")
    if os.environ.get("ORC_TEST_DOCKER_FRESH") == "1":
        # Cold: the run's first worker starts from an empty data root (once per run).
        marker = cache_dir() / "dockerd-fresh-run"
        with _flock(cache_dir() / "dockerd-state.lock", fcntl.LOCK_EX, 120, "state lock"):
            if not shared.live_leases() and not _is(marker, run_id()):
                shutil.rmtree(shared.data_root, ignore_errors=True)
                marker.write_text(run_id())
    busy = "another test run holds the machine's dockerd"
    deadline = time.monotonic() + timeout
    while True:
        # Shared among this run's workers; an older suite's exclusive lock keeps us out.
        with _flock(cache_dir() / "dockerd.lock", fcntl.LOCK_SH, timeout, busy):
            engine = shared.join()
            if engine is not None:
                try:
                    yield engine
                finally:
                    shared.leave(engine.timings)
                return
        if time.monotonic() > deadline:
            raise DockerUnavailable(busy)
        time.sleep(1)


# What Debian's official "-slim" images (the python image's base) configure, so that the stand-in
# and what the Dockerfile installs on it are as large as on the real base: dpkg leaves out the
# documentation, and apt keeps neither the downloaded packages nor its binary caches.
SLIM_DPKG = """path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
"""
_APT_RM = "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb"
APT_CLEAN = f"""DPkg::Post-Invoke {{ "{_APT_RM} /var/cache/apt/*.bin || true"; }};
APT::Update::Post-Invoke {{ "{_APT_RM} /var/cache/apt/*.bin || true"; }};
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""


def _recipe_key() -> str:
    """Changes whenever the stand-in would come out differently (packages, certificates, pip)."""
    digest = hashlib.sha256(f"{SUITE} {BASE_PACKAGES} {SLIM_DPKG} {APT_CLEAN} v2".encode())
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
    tarball = cache / f"base-{SUITE}-{_recipe_key()}.tar"
    # One maker at a time (workers, other runs): a second waits and takes the first's tarball.
    with _flock(cache / "base.lock", fcntl.LOCK_EX, 1200, "another run is making the base"):
        if not tarball.exists():
            _make_base(tarball)
        os.utime(tarball)  # in use: see the clean-up in _make_base
    return tarball


def _make_base(tarball: Path) -> None:
    cache = tarball.parent
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
    # Other recipes' tarballs go once unused for a week: checkouts of other branches on the same
    # machine keep theirs (each costs minutes to make again).
    for stale in cache.glob(f"base-{SUITE}-*.tar"):
        if stale != tarball and time.time() - stale.stat().st_mtime > 7 * 86400:
            stale.unlink()


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
    (root / "etc/dpkg/dpkg.cfg.d/docker").write_text(SLIM_DPKG)
    (root / "etc/apt/apt.conf.d/docker-clean").write_text(APT_CLEAN)
    for leftovers in ("var/cache/apt/archives", "var/lib/apt/lists", "var/cache/apt"):
        for path in (root / leftovers).glob("*"):
            if path.is_file():
                path.unlink()
    # What the slim configuration would have kept out of the packages debootstrap installed.
    share = root / "usr/share"
    for folder in ("groff", "info", "linda", "locale", "man"):
        for path in (share / folder).glob("*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in (share / "lintian/overrides").glob("*"):
        path.unlink()
    for package in (share / "doc").glob("*"):
        for path in package.glob("*"):
            if path.name != "copyright":
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


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
TOKEN = "image-test-token-Xq3vR8LmZ2pW7nK4tY9bHs6d"  # orc refuses guessable tokens
AUTH = {"Authorization": f"Bearer {TOKEN}"}
AGENT_API_KEY = "sk-ant-fake"  # the fake Messages API takes any key


def shop_repository() -> Path:
    """A git repository for a container's /projects/shop (readable by uid 1000); the caller
    removes it."""
    repo = Path(tempfile.mkdtemp(prefix="orc-image-shop-"))
    repo.chmod(0o755)
    (repo / "README.md").write_text("# shop\n")
    for argv in (
        ["init", "-q", "-b", "main"],
        ["add", "README.md"],
        ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "first"],
    ):
        subprocess.run(["git", "-C", str(repo), *argv], check=True, capture_output=True)
    subprocess.run(["chmod", "-R", "a+rX", str(repo)], check=True)
    return repo


def agent_container_args(name: str, repo: Path, anthropic_url: str) -> tuple[str, ...]:
    """``docker run`` options of an orc container that runs tasks: named ``name``, 8080 published
    on the host's loopback, ORC_HOME in the volume ``<name>-data``, ``repo`` mounted read-only as
    /projects/shop, the test token, and the agent pointed at the fake Messages API."""
    return (
        *("--name", name, "-p", "127.0.0.1::8080"),
        *("-v", f"{name}-data:/home/orc/.orc", "-v", f"{repo}:/projects/shop:ro"),
        *("-e", f"ORC_AUTH_TOKEN={TOKEN}"),
        *("-e", f"ANTHROPIC_BASE_URL={anthropic_url}", "-e", f"ANTHROPIC_API_KEY={AGENT_API_KEY}"),
        *("-e", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"),
        *("-e", "ORC_GIT_AUTHOR=orc bot <bot@example.com>"),
    )


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
        return LOOPBACK.get(self.url + "/api/health", timeout=2).status_code == 200


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
    """The run's engine, shared by the xdist workers of the image tests' groups."""
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        try:
            engine = stack.enter_context(shared_engine())
        except DockerUnavailable as exc:
            pytest.skip(f"no Docker engine here: {exc}")
        yield engine
        engine.timings["this worker's image tests"] = round(time.monotonic() - started, 1)


@pytest.fixture(scope="session")
def images(dockerd: Dockerd) -> Images:
    """The stand-in base imported, then both targets built exactly as docs/deployment.md says.

    Once per engine: the first worker builds under a lock, the others find the images built."""
    built = Images(dockerd)
    marker = dockerd.root / "images-built"
    with _flock(cache_dir() / "images.lock", fcntl.LOCK_EX, 1800, "images lock"):
        if marker.exists():
            return built
        tarball: list[Path] = []
        _timed(
            dockerd,
            "base stand-in tarball (cached after the first run)",
            lambda: tarball.append(base_rootfs()),
        )
        _timed(dockerd, "base import", lambda: import_base(dockerd, tarball[0], base_image_tag()))
        build = ("build", "--progress=plain")
        targets = {built.orc: (), built.litestream: ("--target", "litestream")}

        def build_both() -> None:
            # Side by side: BuildKit runs the stages they share once, and the downloads of the
            # rest (pip, apt, Litestream) overlap.
            with ThreadPoolExecutor(max_workers=2) as pool:
                runs = [
                    pool.submit(dockerd.docker, *build, *target, "-t", tag, str(REPO))
                    for tag, target in targets.items()
                ]
                for run in runs:
                    run.result()

        _timed(dockerd, "build both targets", build_both)
        _timed(
            dockerd, "build orc warm", lambda: dockerd.docker(*build, "-t", built.orc, str(REPO))
        )
        marker.write_text(run_id())
    return built


@contextlib.contextmanager
def isolated_engine(name: str) -> Iterator[Dockerd]:
    """A second engine, empty, beside the run's (a machine that never had the images).

    It leaves the host's network and ``docker0`` alone (``Dockerd.isolated``)."""
    root = cache_dir() / f"{name}-engine"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    engine = Dockerd(root, root / "data", isolated=True)
    engine.start()
    try:
        yield engine
    finally:
        engine.clear_leftovers()
        engine.stop()
        shutil.rmtree(root, ignore_errors=True)
