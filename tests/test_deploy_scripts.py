"""scripts/airgap-*, backup-cron, upgrade and rollback against a stand-in `docker` on PATH.

Without an engine (tests/test_image_deploy.py runs them on a real one): the stand-in records
every call and plays the few parts the
scripts need (save/load bytes, pg_dump output, sqlite3 run for real on files that stand for the
container's, a health check that passes or fails). What is checked is the scripts' own logic:
checksums, atomic files, retention, order of steps, exit codes.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.deploy_support import REPO

SCRIPTS = REPO / "scripts"
FAKE_DOCKER = r"""#!/usr/bin/env python3
import os, shutil, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write("\x1f".join(args) + "\n")
root = os.environ.get("FAKE_DOCKER_ROOT", "/nonexistent")
def mapped(path):
    for inside, outside in (("/home/orc/.orc", "home"), ("/tmp", "tmp")):
        if path.startswith(inside):
            return os.path.join(root, outside) + path[len(inside):]
    return path
def fails(name):
    return os.environ.get("FAKE_DOCKER_FAIL") == name
cmd = args[0]
if cmd == "pull":
    sys.exit(1 if fails("pull") else 0)
if cmd == "save":
    sys.stdout.buffer.write(("image " + args[1] + "\n").encode() * 500)
    sys.exit(1 if fails("save") else 0)
if cmd == "load":
    first = sys.stdin.buffer.readline().decode().strip()
    with open(os.environ["FAKE_DOCKER_LOADED"], "a") as loaded:
        loaded.write(first + "\n")
    sys.exit(0)
if cmd == "inspect":
    present = os.environ.get("FAKE_DOCKER_CONTAINERS", "").split(",")
    sys.exit(0 if args[-1] in present else 1)
if cmd == "exec":
    rest = [a for a in args[1:] if a != "-i"]
    program = rest[1:]
    if program[0] == "pg_dump":
        sys.stdout.write("PGDMP fake dump\n")
        sys.exit(1 if fails("pg_dump") else 0)
    if program[0] == "pg_restore":
        data = sys.stdin.read()
        if "--list" not in program:
            with open(os.environ["FAKE_DOCKER_RESTORED"], "w") as out:
                out.write(data)
        sys.exit(0 if data.startswith("PGDMP") else 1)
    if program[0] == "sqlite3":
        sql = program[2].replace("'/tmp", "'" + os.path.join(root, "tmp"))
        sys.exit(subprocess.run(["sqlite3", mapped(program[1]), sql]).returncode)
    if program[0] == "rm":
        for path in program[2:]:
            if os.path.exists(mapped(path)):
                os.remove(mapped(path))
        sys.exit(0)
    if program[:2] == ["orc", "healthcheck"]:
        sys.exit(1 if fails("health") else 0)
if cmd == "cp":
    shutil.copyfile(mapped(args[1].split(":", 1)[1]), args[2])
    sys.exit(0)
if cmd == "compose":
    if "run" in args and os.environ.get("FAKE_DOCKER_RUN_ENV"):
        shutil.copyfile(".env", os.environ["FAKE_DOCKER_RUN_ENV"])  # the image it would run
    sys.exit(0)
sys.exit(f"fake docker: unexpected {args}")
"""


@pytest.fixture
def docker(tmp_path: Path) -> dict[str, str]:
    """The environment for a script: the stand-in docker first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text(FAKE_DOCKER)
    fake.chmod(0o755)
    for name in ("home", "tmp"):
        (tmp_path / "container" / name).mkdir(parents=True)
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "FAKE_DOCKER_LOG": str(tmp_path / "docker.log"),
        "FAKE_DOCKER_LOADED": str(tmp_path / "loaded.txt"),
        "FAKE_DOCKER_RESTORED": str(tmp_path / "restored.dump"),
        "FAKE_DOCKER_ROOT": str(tmp_path / "container"),
        "BACKUP_DIR": str(tmp_path / "backups"),
    }


def run(script: str, *args: str, env: dict[str, str], cwd: Path | None = None):
    return subprocess.run(
        [str(SCRIPTS / script), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def calls(env: dict[str, str]) -> list[list[str]]:
    path = Path(env["FAKE_DOCKER_LOG"])
    text = path.read_text() if path.exists() else ""
    return [line.split("\x1f") for line in text.splitlines()]


# ---- air gap


def test_images_exported_with_checksums_load_on_the_other_side(tmp_path, docker):
    out = tmp_path / "images"
    exported = run("airgap-export", "-o", str(out), "orc:1.2", "caddy:2-alpine", env=docker)
    assert exported.returncode == 0, exported.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "SHA256SUMS",
        "caddy_2-alpine.tar.gz",
        "images.txt",
        "orc_1.2.tar.gz",
    ]
    assert [c[0] for c in calls(docker)] == ["pull", "save", "pull", "save"]
    imported = run("airgap-import", str(out), env=docker)
    assert imported.returncode == 0, imported.stderr
    loaded = Path(docker["FAKE_DOCKER_LOADED"]).read_text().splitlines()
    assert loaded == ["image orc:1.2", "image caddy:2-alpine"]


def test_import_loads_nothing_when_a_file_was_damaged_on_the_way(tmp_path, docker):
    out = tmp_path / "images"
    assert (
        run("airgap-export", "--no-pull", "-o", str(out), "orc:1", "x:2", env=docker).returncode
        == 0
    )
    damaged = out / "x_2.tar.gz"
    damaged.write_bytes(damaged.read_bytes()[:-10])
    imported = run("airgap-import", str(out), env=docker)
    assert imported.returncode == 1
    assert "checksums do not match" in imported.stderr
    assert not Path(docker["FAKE_DOCKER_LOADED"]).exists()


def test_a_failed_save_fails_the_export_and_leaves_no_complete_looking_file(tmp_path, docker):
    out = tmp_path / "images"
    exported = run(
        "airgap-export",
        "--no-pull",
        "-o",
        str(out),
        "orc:1",
        env=dict(docker, FAKE_DOCKER_FAIL="save"),
    )
    assert exported.returncode != 0
    assert not (out / "orc_1.tar.gz").exists() and not (out / "images.txt").exists()


# ---- daily backup


def _old_backup(directory: Path, name: str, days: int) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text("old")
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp))
    return path


def test_postgres_backup_is_checked_written_and_old_ones_pruned(tmp_path, docker):
    backups = Path(docker["BACKUP_DIR"])
    expired = _old_backup(backups, "orc-20200101T000000Z.dump", days=40)
    recent = _old_backup(backups, "orc-20200301T000000Z.dump", days=3)
    result = run("backup-cron", env=dict(docker, FAKE_DOCKER_CONTAINERS="orc-db"))
    assert result.returncode == 0, result.stderr
    written = [p for p in backups.glob("orc-*.dump") if p not in (expired, recent)]
    assert len(written) == 1 and written[0].read_text().startswith("PGDMP")
    assert not expired.exists() and recent.exists()
    assert ["exec", "-i", "orc-db", "pg_restore", "--list"] in calls(docker)
    # Cron has no terminal: a -t would make docker exec fail there.
    assert not any("-t" in call or "-it" in call for call in calls(docker))
    assert oct(written[0].stat().st_mode & 0o777) == "0o600"


def test_a_failed_dump_fails_loudly_and_keeps_every_old_backup(tmp_path, docker):
    backups = Path(docker["BACKUP_DIR"])
    expired = _old_backup(backups, "orc-20200101T000000Z.dump", days=40)
    env = dict(docker, FAKE_DOCKER_CONTAINERS="orc-db", FAKE_DOCKER_FAIL="pg_dump")
    result = run("backup-cron", env=env)
    assert result.returncode != 0
    assert sorted(p.name for p in backups.iterdir()) == [expired.name], "partial file left"


def test_sqlite_backup_is_a_consistent_copy_taken_inside_the_container(tmp_path, docker):
    database = tmp_path / "container" / "home" / "orc.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE task (title TEXT)")
        db.execute("INSERT INTO task VALUES ('kept')")
    result = run("backup-cron", env=docker)
    assert result.returncode == 0, result.stderr
    (written,) = Path(docker["BACKUP_DIR"]).glob("orc-*.db")
    with sqlite3.connect(written) as db:
        assert db.execute("SELECT title FROM task").fetchall() == [("kept",)]
    assert list((tmp_path / "container" / "tmp").iterdir()) == [], "copy left in the container"


# ---- upgrade and rollback


@pytest.fixture
def install(tmp_path: Path) -> Path:
    directory = tmp_path / "install"
    directory.mkdir()
    (directory / ".env").write_text("DOMAIN=orc.example.com\nORC_IMAGE=orc:1.1\n")
    return directory


def test_upgrade_pulls_backs_up_switches_image_and_verifies_health(install, docker):
    env = dict(docker, FAKE_DOCKER_CONTAINERS="orc-db")
    result = run("upgrade", "orc:1.2", "-f", "docker-compose.team.yml", env=env, cwd=install)
    assert result.returncode == 0, result.stderr
    assert "ORC_IMAGE=orc:1.2" in (install / ".env").read_text()
    assert (install / ".orc-previous-image").read_text().strip() == "orc:1.1"
    steps = [" ".join(c) for c in calls(docker)]
    order = [
        steps.index("pull orc:1.2"),
        steps.index("exec orc-db pg_dump -U orc -Fc orc"),
        steps.index("compose -f docker-compose.team.yml up -d"),
        steps.index("exec orc orc healthcheck --timeout 5"),
    ]
    assert order == sorted(order), steps


def test_upgrade_that_ends_unhealthy_exits_1_and_says_how_to_roll_back(install, docker):
    env = dict(
        docker, FAKE_DOCKER_CONTAINERS="orc-db", FAKE_DOCKER_FAIL="health", HEALTH_TIMEOUT="1"
    )
    result = run("upgrade", "orc:1.2", env=env, cwd=install)
    assert result.returncode == 1
    assert "scripts/rollback" in result.stderr


def test_upgrade_stops_before_touching_anything_when_the_pull_fails(install, docker):
    result = run("upgrade", "orc:9.9", env=dict(docker, FAKE_DOCKER_FAIL="pull"), cwd=install)
    assert result.returncode != 0
    assert "ORC_IMAGE=orc:1.1" in (install / ".env").read_text()
    assert not any(c[0] == "compose" for c in calls(docker))


def test_rollback_restores_the_backup_and_the_previous_image(install, docker, tmp_path):
    env = dict(docker, FAKE_DOCKER_CONTAINERS="orc-db")
    assert run("upgrade", "orc:1.2", env=env, cwd=install).returncode == 0
    (backup,) = Path(docker["BACKUP_DIR"]).glob("orc-*.dump")
    result = run("rollback", "--restore", str(backup), env=env, cwd=install)
    assert result.returncode == 0, result.stderr
    assert "ORC_IMAGE=orc:1.1" in (install / ".env").read_text()
    assert Path(docker["FAKE_DOCKER_RESTORED"]).read_text() == backup.read_text()
    steps = [" ".join(c) for c in calls(docker)]
    assert steps.index("compose stop orc") < steps.index(
        "compose up -d", steps.index("compose stop orc")
    )


def test_rollback_restores_a_sql_gz_dump_with_the_current_orc(install, docker, tmp_path):
    env = dict(docker, FAKE_DOCKER_RUN_ENV=str(tmp_path / "env-at-run"))
    (install / ".orc-previous-image").write_text("orc:1.0\n")
    dump = tmp_path / "backups" / "daily" / "orc-20260110.sql.gz"
    dump.parent.mkdir(parents=True)
    dump.write_bytes(b"dump")
    result = run("rollback", "--restore", str(dump), env=env, cwd=install)
    assert result.returncode == 0, result.stderr
    steps = [" ".join(c) for c in calls(docker)]
    restore = (
        f"compose run --rm --no-deps -v {dump}:/restore/orc-20260110.sql.gz:ro "
        "orc orc backup restore /restore/orc-20260110.sql.gz"
    )
    assert steps.index("compose stop orc") < steps.index(restore) < steps.index("compose up -d")
    # orc restores it (tests/test_backup_plain_dump.py), the one that knows .sql.gz dumps.
    assert "ORC_IMAGE=orc:1.1" in (tmp_path / "env-at-run").read_text()
    assert "ORC_IMAGE=orc:1.0" in (install / ".env").read_text()
