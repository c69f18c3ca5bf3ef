"""The deployment files and scripts on the built images, with the suite's Docker engine.

- Compose: deploy/docker-compose.yml up, healthy, a task; then scripts/upgrade to a second image
  (the first plus one migration) and scripts/rollback --restore back, as docs/deployment.md says;
  then down.
- The `litestream` target with a file replica: a write reaches the replica, and with orc.db gone
  from the volume the container restores it on boot.
- scripts/airgap-export and airgap-import: export, then import on a second, empty engine (the
  air-gapped machine, which never had the image) and run it there.

Two xdist groups (tests/docker_support.py, "Groups"): compose with the upgrade and rollback in one,
the litestream and air-gap tests in another, so their waits overlap those of tests/test_image.py.

Two stand-ins, because this machine has neither: Debian's docker-compose v1 for `docker compose`
(v2), and `docker pull` of an image that is already here succeeds (no registry), both in a
`docker` shim the scripts find first on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.docker_support import (
    AUTH,
    DOCKER,
    GROUP_COMPOSE,
    GROUP_IMAGES,
    REPO,
    TOKEN,
    Container,
    Dockerd,
    Images,
    isolated_engine,
)
from tests.support import LOOPBACK, free_port

pytestmark = pytest.mark.timeout(900)
NEXT_IMAGE = "orc:test-next"

SHIM = f"""#!/bin/sh
# docker compose (v2) is not installed here: Debian's docker-compose v1 stands in for it.
if [ "$1" = compose ]; then shift; exec docker-compose "$@"; fi
# No registry here: pulling an image that is already present succeeds, as a registry would.
if [ "$1" = pull ] && {DOCKER} image inspect "$2" >/dev/null 2>&1; then
  echo "present: $2"; exit 0
fi
exec {DOCKER} "$@"
"""

MIGRATION = """from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("orc", "{previous}")]
    initial = False
    operations = [ops.RunSQL("CREATE TABLE upgrade_standin (id INTEGER PRIMARY KEY)")]
"""

# Docker's health status with the image's own 30 s interval is tests/test_image.py's subject; here
# compose's healthcheck (the same command) probes every second so `up` is healthy in seconds.
# docker compose reads docker-compose.override.yml beside the file by itself, so scripts/upgrade
# and scripts/rollback run with it as users run them with theirs.
HEALTH_OVERRIDE = """services:
  orc:
    healthcheck:
      interval: 1s
"""

NEXT_DOCKERFILE = """FROM {base}
USER 0
COPY 9999_upgrade_standin.py /tmp/
RUN dir="$(python -c 'import orc.db.migrations as m, os; print(os.path.dirname(m.__file__))')" \\
    && mv /tmp/9999_upgrade_standin.py "$dir/"
USER 1000:1000
"""


@pytest.fixture
def workdir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="orc-image-deploy-"))
    shim = root / "bin"
    shim.mkdir()
    (shim / "docker").write_text(SHIM)
    (shim / "docker").chmod(0o755)
    shutil.copytree(REPO / "deploy", root / "deploy")
    shutil.copy2(REPO / "Caddyfile", root / "Caddyfile")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _env(dockerd: Dockerd, workdir: Path, **extra: str) -> dict[str, str]:
    return {
        **dockerd.env,
        "PATH": f"{workdir / 'bin'}:{os.environ['PATH']}",
        "COMPOSE_PROJECT_NAME": "orcimage",
        **extra,
    }


def _sh(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> str:
    result = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (
        f"{argv} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout + result.stderr


def _build_next(dockerd: Dockerd, images: Images) -> None:
    """The upgrade's new version: the image plus one migration."""
    previous = sorted(p.stem for p in (REPO / "orc/db/migrations").glob("[0-9]*.py"))[-1]
    with tempfile.TemporaryDirectory() as context:
        (Path(context) / "9999_upgrade_standin.py").write_text(MIGRATION.format(previous=previous))
        (Path(context) / "Dockerfile").write_text(NEXT_DOCKERFILE.format(base=images.orc))
        dockerd.docker("build", "-t", NEXT_IMAGE, context)


def _task_titles(url: str) -> set[str]:
    listed = httpx.get(url + "/api/tasks", headers=AUTH, timeout=10).json()
    items = listed["items"]
    return {task["title"] for task in items}


def _has_standin_table(box: Container) -> bool:
    found = box.exec(
        "sqlite3",
        "/home/orc/.orc/orc.db",
        "SELECT name FROM sqlite_master WHERE name = 'upgrade_standin'",
    )
    return found.stdout.strip() == "upgrade_standin"


@pytest.mark.xdist_group(GROUP_COMPOSE)
def test_compose_up_a_task_upgrade_rollback_and_down(dockerd: Dockerd, images: Images, workdir):
    deploy = workdir / "deploy"
    (deploy / "docker-compose.override.yml").write_text(HEALTH_OVERRIDE)
    port = free_port()
    (deploy / ".env").write_text(
        f"ORC_AUTH_TOKEN={TOKEN}\nORC_IMAGE={images.orc}\nHTTP_PORT={port}\n"
    )
    backups = workdir / "backups"
    env = _env(dockerd, workdir, BACKUP_DIR=str(backups), HEALTH_TIMEOUT="180")
    url = f"http://127.0.0.1:{port}"
    box = Container(dockerd, "orc")
    try:
        started = time.monotonic()
        _sh(["docker", "compose", "up", "-d"], env, deploy)
        box.wait_for(
            lambda: box.inspect("{{.State.Health.Status}}") == "healthy", 150, "compose health"
        )
        dockerd.timings["compose up to healthy"] = round(time.monotonic() - started, 1)
        created = httpx.post(url + "/api/tasks", json={"title": "before upgrade"}, headers=AUTH)
        assert created.status_code == 201, created.text

        _build_next(dockerd, images)
        out = _sh([str(REPO / "scripts/upgrade"), NEXT_IMAGE], env, deploy)
        assert f"orc is healthy on {NEXT_IMAGE}" in out, out
        assert (deploy / ".orc-previous-image").read_text().strip() == images.orc
        assert box.inspect("{{.Config.Image}}") == NEXT_IMAGE
        taken = sorted(backups.glob("orc-*.db"))
        assert len(taken) == 1, "scripts/upgrade took no backup first"
        # The entry point migrated, once (the API runs with --no-migrate).
        assert box.logs().count("applied 1 migration(s)") == 1, box.logs()
        assert _has_standin_table(box)
        assert _task_titles(url) == {"before upgrade"}
        assert httpx.post(url + "/api/tasks", json={"title": "after"}, headers=AUTH).is_success

        out = _sh([str(REPO / "scripts/rollback"), "--restore", str(taken[0])], env, deploy)
        assert f"orc is healthy on {images.orc}" in out, out
        assert box.inspect("{{.Config.Image}}") == images.orc
        assert not _has_standin_table(box)
        box.wait_for(lambda: LOOPBACK.get(url + "/api/health").is_success, 60, "the API")
        assert _task_titles(url) == {"before upgrade"}
    finally:
        subprocess.run(
            ["docker", "compose", "down", "-v"], env=env, cwd=deploy, capture_output=True
        )
    assert dockerd.docker("ps", "-aq", "--filter", "name=^orc$").stdout.strip() == ""


@pytest.mark.xdist_group(GROUP_IMAGES)
def test_the_litestream_image_replicates_and_restores_a_lost_database(
    dockerd: Dockerd, images: Images, workdir
):
    replica = workdir / "replica"
    replica.mkdir()
    os.chown(replica, 1000, 1000)
    config = workdir / "litestream.yml"
    config.write_text(
        "socket:\n  enabled: true\n  path: /tmp/litestream.sock\n"
        "dbs:\n  - path: /home/orc/.orc/orc.db\n"
        "    replica:\n      type: file\n      path: /replica/orc.db\n      sync-interval: 1s\n"
    )
    config.chmod(0o644)
    mounts = ("-v", f"{replica}:/replica", "-v", f"{config}:/etc/litestream.yml:ro")
    box = Container(dockerd, "orc-ls")
    try:
        dockerd.docker(
            *("run", "-d", "--name", "orc-ls", "-p", "127.0.0.1::8080"),
            *("-v", "orc-ls-data:/home/orc/.orc", *mounts),
            *("-e", f"ORC_AUTH_TOKEN={TOKEN}", images.litestream),
        )
        box.wait_for(box.health_ok, 120, "the API")
        title = "replicated by litestream"
        assert httpx.post(box.url + "/api/tasks", json={"title": title}, headers=AUTH).is_success

        def in_replica() -> bool:
            restored = dockerd.docker(
                *("run", "--rm", *mounts, "--entrypoint", "sh", images.litestream, "-c"),
                "litestream restore -config /etc/litestream.yml -o /tmp/r.db"
                " /home/orc/.orc/orc.db >/dev/null && sqlite3 /tmp/r.db 'SELECT title FROM task'",
                check=False,
            )
            return title in restored.stdout

        box.wait_for(in_replica, 90, "the write in the file replica")

        dockerd.docker("stop", "orc-ls")
        dockerd.docker(
            *("run", "--rm", "-v", "orc-ls-data:/data", "--entrypoint", "sh", images.litestream),
            *("-c", "rm -f /data/orc.db /data/orc.db-wal /data/orc.db-shm"),
        )
        dockerd.docker("start", "orc-ls")
        box.wait_for(box.health_ok, 120, "the API after the restore")
        assert title in _task_titles(box.url), box.logs()
    finally:
        dockerd.docker("rm", "-f", "orc-ls", check=False)
        dockerd.docker("volume", "rm", "orc-ls-data", check=False)


@pytest.mark.xdist_group(GROUP_IMAGES)
def test_airgap_export_then_import_and_run_on_an_empty_engine(
    dockerd: Dockerd, images: Images, workdir
):
    env = _env(dockerd, workdir)
    out_dir = workdir / "orc-images"
    started = time.monotonic()
    _sh(
        [str(REPO / "scripts/airgap-export"), "--no-pull", "-o", str(out_dir), images.orc],
        env,
        workdir,
    )
    dockerd.timings["airgap export (orc image)"] = round(time.monotonic() - started, 1)
    image_id = dockerd.docker("image", "inspect", "-f", "{{.Id}}", images.orc).stdout.strip()

    # The air-gapped machine: an engine that has never had any image (the other groups keep
    # running theirs on the suite's engine meanwhile).
    with isolated_engine("airgap") as airgapped:
        assert airgapped.docker("images", "-q").stdout.strip() == ""
        started = time.monotonic()
        _sh([str(REPO / "scripts/airgap-import"), str(out_dir)], _env(airgapped, workdir), workdir)
        dockerd.timings["airgap import"] = round(time.monotonic() - started, 1)
        loaded = airgapped.docker("image", "inspect", "-f", "{{.Id}}", images.orc).stdout
        assert loaded.strip() == image_id
        airgapped.docker(
            *("run", "-d", "--name", "orc-airgap", "--network", "none"),
            *("-e", f"ORC_AUTH_TOKEN={TOKEN}", images.orc),
        )
        box = Container(airgapped, "orc-airgap")
        # No network on that engine: the check scripts/wait-healthy makes, inside.
        box.wait_for(
            lambda: box.exec("orc", "healthcheck", "--timeout", "5", check=False).returncode == 0,
            120,
            "the imported image's API",
        )
