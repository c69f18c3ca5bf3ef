"""The image, built from the repository's Dockerfile and run by a real Docker engine.

tests/docker_support.py starts the suite's own dockerd and makes the Dockerfile's base locally
(no registry is reachable here). Everything else is what a user runs: `docker build .`, `docker
run`, `docker exec`, `docker stop`. The only fake is Anthropic's Messages API
(tests/fake_anthropic.py), served on the host and reached from the container through Docker's
bridge, as the agent would reach api.anthropic.com.

These tests are one xdist group (GROUP_IMAGE; scripts/test uses --dist loadgroup): their containers
start together in one fixture. The other image tests run in groups of their own beside them, on the
same engine and images (tests/docker_support.py, "Groups").
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.docker_support import (
    AUTH,
    GROUP_IMAGE,
    TOKEN,
    Container,
    Dockerd,
    Images,
    agent_container_args,
    shop_repository,
)
from tests.fake_anthropic import CWD, DONE, FakeAnthropic, text, tool_calls, write
from tests.support import LOOPBACK

pytestmark = [pytest.mark.xdist_group(GROUP_IMAGE), pytest.mark.timeout(900)]


@dataclass
class Started:
    """Containers started together so their waits (health, a failing start) overlap."""

    main: Container
    broken: Container
    fake: FakeAnthropic
    started_at: float


# autouse: the containers start before the module's first test, so the checks of the image
# itself run while they come up.
@pytest.fixture(scope="module", autouse=True)
def started(dockerd: Dockerd, images: Images) -> Iterator[Started]:
    gateway = dockerd.gateway()
    with FakeAnthropic(host=gateway) as fake:
        repo = shop_repository()
        # A directory where the job queue's SQLite file belongs: only the worker uses it.
        dockerd.docker(
            *("run", "--rm", "-v", "orc-broken-data:/home/orc/.orc", "--entrypoint", "mkdir"),
            *(images.orc, "/home/orc/.orc/queue.db"),
        )
        started_at = time.monotonic()
        dockerd.docker(
            *("run", "-d", *agent_container_args("orc-main", repo, fake.base_url)),
            *("-e", "ORC_BACKUP_SCHEDULE=* * * * *", images.orc),
        )
        dockerd.docker(
            *("run", "-d", "--name", "orc-broken", "-v", "orc-broken-data:/home/orc/.orc"),
            *("-e", f"ORC_AUTH_TOKEN={TOKEN}", images.orc),
        )
        yield Started(
            Container(dockerd, "orc-main"), Container(dockerd, "orc-broken"), fake, started_at
        )
        dockerd.docker("rm", "-f", "orc-main", "orc-broken", check=False)
        subprocess.run(["rm", "-rf", str(repo)], check=False)


def _run_in_image(images: Images, image: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """A one-off command in ``image`` with its entry point bypassed."""
    return images.dockerd.docker(
        "run", "--rm", "--entrypoint", argv[0], image, *argv[1:], check=False
    )


def test_both_targets_build_from_the_dockerfile_alone(images: Images):
    config = json.loads(images.dockerd.docker("image", "inspect", images.orc).stdout)[0]["Config"]
    assert config["User"] == "1000:1000"
    assert config["Healthcheck"]["Test"] == ["CMD", "orc", "healthcheck", "--timeout", "5"]
    assert "8080/tcp" in config["ExposedPorts"]
    litestream = _run_in_image(images, images.litestream, "litestream", "version")
    assert litestream.returncode == 0 and litestream.stdout.startswith(("v0.5.", "0.5.")), (
        litestream
    )
    assert _run_in_image(images, images.orc, "sh", "-c", "command -v litestream").returncode != 0


def test_the_image_holds_the_agent_and_git_and_no_build_leftovers(images: Images):
    size = int(images.dockerd.docker("image", "inspect", "-f", "{{.Size}}", images.orc).stdout)
    history = images.dockerd.docker(
        "history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", images.orc
    ).stdout
    layers = [[*line.split("\t"), ""][:2] for line in history.strip().splitlines()]
    print(f"\nimage size {size / 1e6:.0f} MB; layers:")
    for layer_size, created_by in layers:
        print(f"  {layer_size:>8}  {created_by[:110]}")
    images.dockerd.timings["image size MB"] = round(size / 1e6)
    # Measured 1.05 GB, of which Claude Code's bundled CLI is about 0.4 GB: a jump means
    # something unplanned came in.
    assert size < 1.3e9, history
    leftovers = _run_in_image(
        images,
        images.orc,
        "sh",
        "-c",
        # /wheels stays as an empty mount point of the RUN --mount that installed orc.
        "ls -A /wheels; ls -d /src /root/.cache /home/orc/.cache/pip 2>/dev/null;"
        " command -v gcc cc make; ls /var/lib/apt/lists | grep -v -e partial -e lock",
    )
    assert leftovers.stdout.strip() == "", leftovers.stdout
    agent = _run_in_image(
        images,
        images.orc,
        "sh",
        "-c",
        'git --version && "$(python -c "import claude_agent_sdk, pathlib;'
        " print(pathlib.Path(claude_agent_sdk.__file__).parent / '_bundled' / 'claude')\")\""
        " --version",
    )
    assert agent.returncode == 0, agent.stdout + agent.stderr
    assert "git version" in agent.stdout and "Claude Code" in agent.stdout
    # The wheel kept the launcher wrapper's executable mode (else the slower console script).
    launcher = _run_in_image(
        images,
        images.orc,
        "python",
        "-c",
        "from orc.runs.agent import launcher_path; print(launcher_path())",
    )
    assert launcher.stdout.strip().endswith("/orc/runs/agent-exec.sh"), launcher


def test_running_the_service_as_root_is_refused(images: Images):
    result = images.dockerd.docker(
        "run", "--rm", "--user", "0", "-e", f"ORC_AUTH_TOKEN={TOKEN}", images.orc, check=False
    )
    assert result.returncode == 2
    assert "refusing to run the service as root" in result.stderr


def test_docker_run_image_token_generate_prints_a_token(images: Images):
    result = images.dockerd.docker("run", "--rm", images.orc, "token", "generate")
    assert len(result.stdout.strip()) >= 32, result


def test_docker_reports_the_container_healthy(started: Started):
    main = started.main
    main.wait_for(
        lambda: main.inspect("{{.State.Health.Status}}") == "healthy", 150, "Docker's health"
    )
    seconds = time.monotonic() - started.started_at
    main.dockerd.timings["docker run to healthy"] = round(seconds, 1)


def test_the_probes_answer_without_the_token_the_api_needs_it(started: Started):
    url = started.main.url
    started.main.wait_for(started.main.health_ok, 120, "the API")  # whatever ran before
    health = httpx.get(url + "/api/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    started.main.wait_for(
        lambda: LOOPBACK.get(url + "/api/health/ready").status_code == 200, 60, "readiness"
    )
    assert httpx.get(url + "/api/tasks").status_code == 401
    assert httpx.get(url + "/api/tasks", headers={"Authorization": "Bearer nope"}).status_code == (
        401
    )
    created = httpx.post(url + "/api/tasks", json={"title": "made in the image"}, headers=AUTH)
    assert created.status_code == 201, created.text
    task = httpx.get(f"{url}/api/tasks/{created.json()['id']}", headers=AUTH).json()
    assert task["title"] == "made in the image"


def test_every_process_in_the_container_runs_as_uid_1000(started: Started):
    started.main.wait_for(started.main.health_ok, 120, "the API")
    table = started.main.dockerd.docker("top", "orc-main", "-eo", "pid,uid,args").stdout
    rows = [line.split(None, 2) for line in table.strip().splitlines()[1:]]
    assert {uid for _, uid, _ in rows} == {"1000"}, table
    commands = " ".join(args for _, _, args in rows)
    for program in ("orc-supervisord", "orc serve", "orc worker", "orc-fatal-listener"):
        assert program in commands, table


def test_kill_9_of_the_api_is_restarted_and_the_container_stays_up(started: Started):
    main = started.main
    main.wait_for(main.health_ok, 120, "the API")
    container_pid = main.inspect("{{.State.Pid}}")
    old = main.exec("supervisorctl", "pid", "api").stdout.strip()
    main.exec("sh", "-c", f"kill -KILL {old}")  # no kill(1) in the image: the shell's

    def restarted() -> bool:
        pid = main.exec("supervisorctl", "pid", "api", check=False).stdout.strip()
        return pid not in (old, "0", "") and main.health_ok()

    seconds = main.wait_for(restarted, 60, "the API restarted by supervisord")
    main.dockerd.timings["api kill -9 to healthy again"] = round(seconds, 1)
    assert main.inspect("{{.State.Running}} {{.State.Pid}} {{.RestartCount}}") == (
        f"true {container_pid} 0"
    )


def test_a_program_that_cannot_start_stops_the_container_with_a_non_zero_exit(started: Started):
    code = started.broken.wait_exit(timeout=180)
    assert code != 0, started.broken.logs()
    assert "program worker went FATAL" in started.broken.logs()


def test_a_task_runs_inside_the_container_against_the_messages_api(started: Started):
    main, fake = started.main, started.fake
    main.wait_for(main.health_ok, 120, "the API")
    added = main.exec("orc", "project", "add", "/projects/shop")
    assert added.returncode == 0, added.stderr
    created = httpx.post(
        main.url + "/api/tasks",
        json={"title": "Add a greeting", "weight": "trivial", "project": "shop"},
        headers=AUTH,
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    fake.script(
        [
            tool_calls(write(CWD + "/greeting.py", "print('hello')\n")),
            text("Added greeting.py.\n" + DONE % "added a greeting"),
        ]
    )
    queued = httpx.post(f"{main.url}/api/tasks/{task_id}/run", headers=AUTH)
    assert queued.status_code in (200, 201, 202), queued.text

    def status() -> str:
        return LOOPBACK.get(f"{main.url}/api/tasks/{task_id}", headers=AUTH).json()["status"]

    main.wait_for(lambda: status() in ("completed", "failed", "paused"), 240, "the run")
    if status() != "completed":
        log = main.exec("orc", "log", task_id, check=False)
        task = httpx.get(f"{main.url}/api/tasks/{task_id}", headers=AUTH).text
        raise AssertionError(f"{task}\n{log.stdout}\n{log.stderr}\n{main.logs()[-3000:]}")
    assert fake.message_requests, "the agent never reached the Messages API"
    log = main.exec(
        *("git", "-C", "/home/orc/.orc/clones/shop", "log", "-1", "--format=%an|%s"),
        f"orc/{task_id}",
    ).stdout
    assert log.startswith(f"orc bot|{task_id} implement: added a greeting"), log
    shown = main.exec(
        "git", "-C", "/home/orc/.orc/clones/shop", "show", f"orc/{task_id}:greeting.py"
    )
    assert shown.stdout == "print('hello')\n"


def _backups(main: Container) -> list[dict]:
    listed = main.exec("orc", "backup", "list", "--json", check=False)
    return json.loads(listed.stdout) if listed.returncode == 0 else []


def _on_volume(main: Container) -> list[str]:
    """The backups directory of the container's volume, seen from another container."""
    return main.dockerd.docker(
        *("run", "--rm", "-v", "orc-main-data:/data", "--entrypoint", "ls"),
        *(main.inspect("{{.Config.Image}}"), "/data/backups"),
    ).stdout.split()


# After the task's run: by then the every-minute schedule has usually fired already, so the wait
# for the next minute overlaps the run instead of adding to it.
def test_backup_now_and_a_scheduled_backup_land_on_the_volume(started: Started):
    main = started.main
    now = main.exec("orc", "backup", "now", "--quiet")
    assert now.returncode == 0, now.stderr
    assert now.stdout.strip() in _on_volume(main)

    def scheduled() -> list[str]:
        return [b["name"] for b in _backups(main) if b["reason"] == "scheduled"]

    main.wait_for(scheduled, 150, "a scheduled backup (ORC_BACKUP_SCHEDULE every minute)")
    # (Retention may then prune the manual one: both are rotated newest per day.) The next
    # minute's backup may replace this one while the volume is listed: one of the scheduled
    # backups listed before or after is there.
    before = scheduled()
    volume = _on_volume(main)
    assert set(before + scheduled()) & set(volume), (before, volume)


def test_docker_stop_exits_0_in_the_grace_period_and_keeps_an_acknowledged_write(
    started: Started,
):
    main = started.main
    main.wait_for(main.health_ok, 120, "the API")
    created = httpx.post(main.url + "/api/tasks", json={"title": "just before stop"}, headers=AUTH)
    assert created.status_code == 201
    before = time.monotonic()
    # The grace period of the compose files and the Kubernetes manifest (stop_grace_period).
    main.dockerd.docker("stop", "--time", "330", "orc-main")
    seconds = time.monotonic() - before
    main.dockerd.timings["docker stop"] = round(seconds, 1)
    # 137 would mean Docker had to SIGKILL it at the end of the grace period.
    print(f"\ndocker stop took {seconds:.1f}s (Docker's default grace period is 10 s)")
    assert main.inspect("{{.State.ExitCode}}") == "0", main.logs()
    main.dockerd.docker("start", "orc-main")
    main.wait_for(main.health_ok, 120, "the API after docker start")
    again = httpx.get(f"{main.url}/api/tasks/{created.json()['id']}", headers=AUTH)
    assert again.status_code == 200 and again.json()["title"] == "just before stop"
