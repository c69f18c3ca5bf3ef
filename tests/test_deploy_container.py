"""Container rehearsal: the image's entry point and supervisord.conf, run for real as non-root.

Without Docker, so it is quick to run and debug; tests/test_image.py builds and runs the image
itself (apt, pip in the image, Docker's HEALTHCHECK, volumes, the network). See
docs/deployment.md, "What the tests cover".
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.deploy_support import (
    ENTRYPOINT,
    REPO,
    TOKEN,
    Container,
    build_image_bin,
    container,
    run_as_user,
)
from tests.support import LOOPBACK

# One xdist worker runs them all, so the image's venv is built once, not once per worker.
pytestmark = [pytest.mark.timeout(240), pytest.mark.xdist_group("container_rehearsal")]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def image_bin() -> Path:
    return build_image_bin()  # cached between runs, rebuilt when what goes into it changes


@pytest.fixture(scope="module")
def running(image_bin: Path) -> Iterator[Container]:
    """One container shared by the tests that only look at it or kill one program."""
    with container(image_bin) as box:
        yield box


def _wait_for(predicate, timeout: float, what: str, box: Container) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout}s:\n{box.logs()[-4000:]}")


def test_it_serves_the_api_on_all_interfaces_behind_the_token(running: Container):
    assert LOOPBACK.get(running.base_url + "/api/health").json()["status"] == "ok"
    # --host 0.0.0.0 is only allowed with auth: the token from the environment guards the API.
    assert LOOPBACK.get(running.base_url + "/api/tasks").status_code == 401
    assert LOOPBACK.get(running.base_url + "/api/tasks", headers=AUTH).status_code == 200


def test_the_rehearsal_runs_the_orc_of_this_checkout(image_bin: Path):
    """The venv is cached between runs: its orc and workers must be this checkout's, byte for
    byte (a stale cache would rehearse old code)."""
    if run_as_user() is None:
        pytest.skip("not root: the rehearsal runs this checkout's own environment")
    found = subprocess.run(
        [str(image_bin / "python"), "-I", "-c", "import orc, workers; print(orc.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = Path(found.stdout.strip()).parent.parent
    assert installed != REPO, "the rehearsal must not import the checkout itself"
    for package in ("orc", "workers"):
        sources = {
            path.relative_to(REPO): path.read_bytes()
            for path in (REPO / package).rglob("*.py")
            if "__pycache__" not in path.parts
        }
        copies = {
            path.relative_to(installed): path.read_bytes()
            for path in (installed / package).rglob("*.py")
            if "__pycache__" not in path.parts
        }
        assert copies == sources, f"the rehearsal venv's {package} differs from the checkout's"


def test_the_worker_runs_jobs_its_heartbeat_reaches_readiness(running: Container):
    def heartbeat_ok() -> bool:
        body = LOOPBACK.get(running.base_url + "/api/health/ready", timeout=5).json()
        return body["checks"].get("worker") == "ok"

    _wait_for(heartbeat_ok, 60, "the worker's heartbeat", running)


def test_every_process_runs_as_the_non_root_user(running: Container):
    processes = running.processes()
    names = " ".join(" ".join(p.cmdline()) for p in processes)
    assert "orc-supervisord" in names and "orc serve" in names and "orc worker" in names
    assert "orc-fatal-listener" in names
    for proc in processes:
        assert proc.uids().real != 0, f"{proc.cmdline()} runs as root"
    expected = run_as_user()
    if expected is not None:
        assert {p.uids().real for p in processes} == {expected[0]}


def _states(box: Container) -> dict[str, str]:
    result = box.supervisorctl("status")
    return {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()}


def test_supervisorctl_reaches_supervisord_through_its_socket(running: Container):
    # RUNNING once a program has stayed up for startsecs (10 s).
    _wait_for(lambda: _states(running).get("worker") == "RUNNING", 30, "worker RUNNING", running)
    result = running.supervisorctl("status")
    lines = _states(running)
    assert lines["api"] == "RUNNING", result.stdout
    assert lines["worker"] == "RUNNING", result.stdout
    # Replication is off by default: Litestream is configured but never started.
    assert lines["litestream"] == "STOPPED", result.stdout
    assert lines["fatal"] == "RUNNING", result.stdout


def test_the_troubleshooting_commands_of_the_docs_work_inside_the_container(running: Container):
    # docker exec orc orc healthcheck --ready
    ready = running.run("orc", "healthcheck", "--ready")
    assert ready.returncode == 0, ready.stderr
    assert json.loads(ready.stdout)["checks"]["database"] == "ok"
    # docker exec orc sqlite3 /home/orc/.orc/orc.db "PRAGMA journal_mode;"
    journal = running.run("sqlite3", str(running.home / "orc.db"), "PRAGMA journal_mode;")
    assert journal.stdout.strip() == "wal"


def test_api_killed_with_sigkill_is_restarted_and_healthy_again(running: Container):
    """supervisord restarts the API; how fast is printed, not asserted (a loaded machine varies)."""
    old_pid = running.program_pid("api")
    old_server = psutil.Process(old_pid).children()  # the API process orc serve launched
    assert old_server, "orc serve runs its API in a child process"
    os.kill(old_pid, signal.SIGKILL)
    started = time.monotonic()

    def back() -> bool:
        # The old API process must be gone (not orphaned, holding the port) and a new one answer.
        if any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in old_server):
            return False
        pid = running.program_pid("api")
        return pid not in (0, old_pid) and running.health_ok()

    _wait_for(back, 60, "api back after kill -9", running)
    print(f"\napi healthy again {time.monotonic() - started:.2f}s after kill -9")
    _wait_for(lambda: _states(running).get("api") == "RUNNING", 30, "api RUNNING", running)


def test_a_worker_that_cannot_start_stops_supervisord_with_a_non_zero_exit(image_bin: Path):
    with container(image_bin, start=False) as box:
        # A directory where the job queue's SQLite file should be: only the worker uses it.
        (box.home / "queue.db").mkdir()
        box.chown(box.home)
        box.start()
        started = time.monotonic()
        code = box.wait_exit(timeout=90)
        print(f"\nsupervisord exited {code} {time.monotonic() - started:.1f}s after start")
        assert code != 0, box.logs()
        assert "program worker went FATAL" in box.logs()
        assert box.processes() == [] and box.user_processes() == [], "processes left behind"


def test_sigterm_stops_everything_in_time_and_keeps_an_acknowledged_write(image_bin: Path):
    with container(image_bin) as box:
        created = LOOPBACK.post(
            box.base_url + "/api/tasks", json={"title": "written before SIGTERM"}, headers=AUTH
        )
        assert created.status_code == 201
        code, seconds = box.stop(signal.SIGTERM, timeout=60)
        print(f"\ncontainer stopped {seconds:.2f}s after SIGTERM")
        assert code == 0, box.logs()
        # The api's stopwaitsecs (30) is the smallest bound any program is allowed.
        assert seconds < 30
        assert box.user_processes() == [], "processes left behind"
        with sqlite3.connect(box.home / "orc.db") as db:
            titles = [row[0] for row in db.execute("SELECT title FROM task")]
        assert "written before SIGTERM" in titles


def test_the_entry_point_refuses_an_invalid_litestream_switch(image_bin: Path):
    with container(image_bin, start=False, ORC_LITESTREAM_ENABLED="maybe") as box:
        box.start(wait=False)
        assert box.wait_exit(timeout=30) == 2
        assert "ORC_LITESTREAM_ENABLED=maybe is invalid" in box.logs()


def test_litestream_program_replicates_writes_to_a_file_replica(image_bin: Path):
    with container(image_bin, start=False) as box:
        replica = box.root / "replica"
        config = box.root / "litestream.yml"
        config.write_text(
            f"dbs:\n  - path: {box.home / 'orc.db'}\n    replicas:\n"
            f"      - type: file\n        path: {replica}\n        sync-interval: 1s\n"
        )
        box.env.update(ORC_LITESTREAM_ENABLED="true", ORC_LITESTREAM_CONFIG=str(config))
        # An existing database: the entry point has nothing to restore.
        migrated = box.run(str(box.bin_dir / "orc"), "migrate")
        assert migrated.returncode == 0, migrated.stderr
        box.chown(box.root)
        box.start()
        _wait_for(
            lambda: box.supervisorctl("status", "litestream").stdout.split()[1] == "RUNNING",
            20,
            "litestream running",
            box,
        )
        title = "replicated by litestream"
        created = LOOPBACK.post(box.base_url + "/api/tasks", json={"title": title}, headers=AUTH)
        assert created.status_code == 201
        restored = box.root / "restored.db"

        def replica_has_task() -> bool:
            restored.unlink(missing_ok=True)
            result = box.run(
                str(box.bin_dir / "litestream"),
                "restore",
                "-config",
                str(config),
                "-o",
                str(restored),
                str(box.home / "orc.db"),
            )
            if result.returncode != 0:
                return False
            with sqlite3.connect(restored) as db:
                return title in [row[0] for row in db.execute("SELECT title FROM task")]

        seconds = _wait_for(replica_has_task, 30, "the task in the replica", box)
        print(f"\nwrite restored from the file replica after {seconds:.1f}s")
        code, _ = box.stop(signal.SIGTERM)
        assert code == 0


def test_the_entry_point_runs_a_given_command_instead_of_the_service(image_bin: Path):
    # docker run IMAGE orc token generate: no migration, no supervisord.
    with container(image_bin, start=False) as box:
        result = box.run(str(ENTRYPOINT), "orc", "token", "generate")
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.strip()) >= 32
        assert not (box.home / "orc.db").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start the entry point as root")
def test_the_entry_point_refuses_to_run_the_service_as_root(image_bin: Path):
    with container(image_bin, start=False) as box:
        result = subprocess.run(
            [str(ENTRYPOINT)], env=box.env, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 2
        assert "refusing to run the service as root" in result.stderr
        assert not (box.home / "orc.db").exists()
