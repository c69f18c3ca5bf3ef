"""The production (Caddy) and team (PostgreSQL, OIDC) compose files, up for real and down again.

As docs/deployment.md tells users: ``cp .env.example .env``, fill in the values, ``docker compose
-f docker-compose.prod.yml up -d`` (Debian's docker-compose v1 here; no v2 plugin on this
machine). The orc image is the suite's build, tagged as the files' default ``ORC_IMAGE``; Caddy,
PostgreSQL and the backup image are the stand-ins of tests/docker_standins.py under the tags the
files name (no registry here). Both stacks start at once so their health waits overlap.

Four changes to the files, made in a copy and nothing else:
- Caddy's published ports become ephemeral ports on 127.0.0.1: a test must not take the host's 80
  and 443, and docker-compose v1 merges an override's ``ports`` into the file's (v2's ``!reset``
  is not here), so an override cannot take them away.
- The team copy's container names get a suffix, so both stacks can run side by side.
- orc's health check probes every second instead of every 30 s, so ``up`` reaches healthy in
  seconds; the image's own 30 s interval is tests/test_image.py's subject.
- The team's orc trusts the test issuer's self-signed certificate (a mounted file and
  ``SSL_CERT_FILE``): orc accepts a plain-http issuer only on localhost, and the issuer here is
  the host's address on the Docker bridge, as a real issuer is some https:// host.

DOMAIN is ``localhost`` (prod) and ``orc.localhost`` (team, in its own env file: orc refuses a
localhost ORC_BASE_URL with OIDC): Caddy then issues the certificate from its own local CA (no
ACME, no internet here), and the tests verify TLS against that CA's root, read from the
``caddy_data`` volume. The identity provider is tests/oidc_provider.py over HTTPS, listening on
the host's address on the Docker bridge so the orc container reaches it as it would reach a real
issuer.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import websockets
import yaml

from tests.deploy_support import SECURITY_HEADERS, make_certificate
from tests.docker_standins import ensure_standins
from tests.docker_support import AUTH, GROUP_COMPOSE, REPO, TOKEN, Container, Dockerd, Images
from tests.oidc_provider import Provider, run_provider

# GROUP_COMPOSE: the prod copy keeps the files' container names (orc, orc-proxy), as the compose
# test of tests/test_image_deploy.py does, so the two never run at once.
pytestmark = [pytest.mark.xdist_group(GROUP_COMPOSE), pytest.mark.timeout(900)]
DOMAIN = "localhost"
# orc refuses ORC_BASE_URL=https://localhost with OIDC (the provider sends users back there), so
# the team's name is another one Caddy certifies from its local CA; nothing resolves it here:
# the tests connect to 127.0.0.1 with it as the TLS server name and the Host header.
TEAM_DOMAIN = "orc.localhost"
CADDY_ROOT = "/data/caddy/pki/authorities/local/root.crt"


def default_orc_image() -> str:
    """The ``ORC_IMAGE`` the compose files and .env.example default to."""
    match = re.search(
        r"\$\{ORC_IMAGE:-([^}]+)\}", (REPO / "deploy/docker-compose.prod.yml").read_text()
    )
    assert match is not None
    return match.group(1)


def _copy_with_loopback_ports(
    source: Path, target: Path, suffix: str = "", issuer_ca: str = ""
) -> None:
    """``source`` as the module's docstring says: loopback ports, names, health interval, and
    with ``issuer_ca`` (a file beside ``target``) the CA orc trusts for the issuer."""
    config = yaml.safe_load(source.read_text())
    caddy = config["services"]["caddy"]
    assert caddy["ports"] == ["80:80", "443:443", "443:443/udp"], caddy["ports"]
    caddy["ports"] = ["127.0.0.1::80", "127.0.0.1::443"]
    for service in config["services"].values():
        service["container_name"] += suffix
    orc = config["services"]["orc"]
    orc["healthcheck"]["interval"] = "1s"
    if issuer_ca:
        orc["volumes"].append(f"./{issuer_ca}:/etc/ssl/orc-test-issuer.pem:ro")
        orc["environment"]["SSL_CERT_FILE"] = "/etc/ssl/orc-test-issuer.pem"
    target.write_text(yaml.safe_dump(config, sort_keys=False))


def _env_file(example: Path, values: dict[str, str]) -> str:
    """.env.example with ``values`` filled in, as a user edits it."""
    text = example.read_text()
    for key, value in values.items():
        text, count = re.subn(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
        assert count == 1, key
    return text


class _ServerName(httpx.HTTPTransport):
    """A transport that names ``server_name`` in TLS (SNI, certificate check) whatever the URL's
    host is."""

    def __init__(self, server_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server_name = server_name

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.extensions = {**request.extensions, "sni_hostname": self.server_name}
        return super().handle_request(request)


@dataclass
class Stack:
    """One compose project of the copied deploy/ directory."""

    dockerd: Dockerd
    deploy: Path
    file: str
    project: str
    suffix: str = ""
    domain: str = DOMAIN
    tls: ssl.SSLContext | None = None
    up_error: str = ""

    @property
    def argv(self) -> list[str]:
        """docker-compose for this stack: its .env (the team's is ``team.env``) and file."""
        env_file = self.deploy / ("team.env" if self.suffix else ".env")
        return ["docker-compose", "--env-file", str(env_file), "-p", self.project, "-f", self.file]

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.argv, *args],
            cwd=self.deploy,
            env=self.dockerd.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def up(self) -> subprocess.Popen[str]:
        """``up -d``, in the background: it returns once Caddy started, after orc is healthy."""
        return subprocess.Popen(
            [*self.argv, "up", "-d"],
            cwd=self.deploy,
            env=self.dockerd.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def container(self, name: str) -> Container:
        return Container(self.dockerd, name + self.suffix)

    def port(self, target: str) -> int:
        address = self.dockerd.docker("port", "orc-proxy" + self.suffix, target).stdout.split()[0]
        return int(address.rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        return f"https://{self.domain}:{self.port('443/tcp')}"

    def client(self, **kwargs: object) -> httpx.Client:
        """HTTPS to Caddy's published port on 127.0.0.1, as ``domain`` (SNI and Host)."""
        assert self.tls is not None
        port = self.port("443/tcp")
        return httpx.Client(
            base_url=f"https://127.0.0.1:{port}",
            headers={"Host": f"{self.domain}:{port}"},
            transport=_ServerName(self.domain, verify=self.tls),
            timeout=10,
            **kwargs,  # type: ignore[arg-type]
        )

    def wait_for_https(self) -> None:
        """Caddy's local CA exists and a verified handshake to DOMAIN succeeds."""
        proxy = self.container("orc-proxy")
        proxy.wait_for(
            lambda: proxy.exec("test", "-s", CADDY_ROOT, check=False).returncode == 0,
            60,
            "Caddy's local CA",
        )
        self.tls = ssl.create_default_context(cadata=proxy.exec("cat", CADDY_ROOT).stdout)
        proxy.wait_for(
            lambda: self.client().get("/api/health").status_code == 200, 60, "HTTPS via Caddy"
        )


@dataclass
class Stacks:
    prod: Stack
    team: Stack
    provider: Provider
    issuer_tls: ssl.SSLContext


def _finish_up(stack: Stack, process: subprocess.Popen[str]) -> None:
    """Wait for ``up``; a failure is kept (with the logs) for the stack's tests to report."""
    output, _ = process.communicate(timeout=300)
    try:
        if process.returncode != 0:
            raise AssertionError(f"{stack.file} up exited {process.returncode}:\n{output}")
        stack.wait_for_https()
        stack.up_error = ""
    except AssertionError as exc:
        logs = stack.compose("logs", "--no-color", "--tail", "40").stdout
        stack.up_error = f"{exc}\n{logs}"


def _is_up(stack: Stack) -> Stack:
    assert not stack.up_error, stack.up_error
    return stack


@pytest.fixture(scope="module")
def stacks(dockerd: Dockerd, images: Images) -> Iterator[Stacks]:
    for step, seconds in ensure_standins(dockerd).items():
        dockerd.timings[step] = seconds
    dockerd.docker("tag", images.orc, default_orc_image())
    workdir = Path(tempfile.mkdtemp(prefix="orc-image-compose-"))
    deploy = workdir / "deploy"
    shutil.copytree(REPO / "deploy", deploy)
    shutil.copy2(REPO / "Caddyfile", workdir / "Caddyfile")
    _copy_with_loopback_ports(REPO / "deploy/docker-compose.prod.yml", deploy / "prod.yml")
    _copy_with_loopback_ports(
        REPO / "deploy/docker-compose.team.yml", deploy / "team.yml", "-team", "issuer.pem"
    )
    gateway = dockerd.gateway()
    cert, key = deploy / "issuer.pem", workdir / "issuer.key"
    make_certificate(cert, key, gateway, san=f"IP:{gateway}")
    cert.chmod(0o644)
    prod = Stack(dockerd, deploy, "prod.yml", "orcprod")
    team = Stack(dockerd, deploy, "team.yml", "orcteam", "-team", TEAM_DOMAIN)
    issuer_tls = ssl.create_default_context(cafile=str(cert))
    with run_provider(host=gateway, tls=(cert, key)) as provider:
        values = {
            "DOMAIN": DOMAIN,
            "ORC_AUTH_TOKEN": TOKEN,
            "POSTGRES_PASSWORD": secrets.token_hex(24),
            "OIDC_ISSUER": provider.issuer,
            "OIDC_CLIENT_ID": "orc-compose",
            "OIDC_CLIENT_SECRET": secrets.token_urlsafe(24),
        }
        (deploy / ".env").write_text(_env_file(deploy / ".env.example", values))
        values["DOMAIN"] = TEAM_DOMAIN
        (deploy / "team.env").write_text(_env_file(deploy / ".env.example", values))
        try:
            started = time.monotonic()
            ups = [(prod, prod.up()), (team, team.up())]
            for stack, process in ups:
                _finish_up(stack, process)
            dockerd.timings["prod + team compose up to HTTPS"] = round(
                time.monotonic() - started, 1
            )
            yield Stacks(prod, team, provider, issuer_tls)
        finally:
            for stack in (prod, team):
                down = stack.compose("down", "-v")
                assert down.returncode == 0, down.stdout + down.stderr
            dockerd.docker("rmi", default_orc_image(), check=False)
            shutil.rmtree(workdir, ignore_errors=True)
    left = dockerd.docker("ps", "-aq", "--filter", "label=com.docker.compose.project").stdout
    assert left.strip() == "", "containers left after down -v"


def test_prod_serves_orc_over_https_behind_caddy(stacks: Stacks):
    prod = _is_up(stacks.prod)
    with prod.client() as https:
        health = https.get("/api/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        for name, value in SECURITY_HEADERS.items():
            assert health.headers.get(name) == value, name
        assert "server" not in health.headers
        ready = https.get("/api/health/ready")
        assert ready.status_code == 200, ready.text
        assert https.get("/api/tasks").status_code == 401
        created = https.post("/api/tasks", json={"title": "behind caddy"}, headers=AUTH)
        assert created.status_code == 201, created.text
    # orc itself is not published; Caddy answers plain HTTP with a redirect to HTTPS.
    assert prod.dockerd.docker("port", "orc").stdout.strip() == ""
    plain = httpx.get(
        f"http://127.0.0.1:{prod.port('80/tcp')}/api/health", headers={"Host": DOMAIN}
    )
    assert plain.status_code == 308 and plain.headers["location"] == f"https://{DOMAIN}/api/health"

    async def websocket() -> dict[str, object]:
        url = prod.url.replace("https", "wss") + "/api/ws"
        async with websockets.connect(url, ssl=prod.tls, additional_headers=AUTH) as ws:
            await ws.send(json.dumps({"type": "subscribe", "task_id": "*"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "subscribed"
            with prod.client() as https:
                await asyncio.to_thread(
                    https.post, "/api/tasks", json={"title": "via wss"}, headers=AUTH
                )
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if message["type"] == "event" and message["event_type"] == "task_created":
                    return message

    assert asyncio.run(websocket())["task_id"] == "TASK-002"


def _sign_in(team: Stack, email: str, issuer_tls: ssl.SSLContext) -> httpx.Client:
    """The browser's round trip: orc (through Caddy) -> the provider -> orc's callback."""
    browser = team.client()
    login = browser.get("/auth/login")
    assert login.status_code == 302, login.text
    authorize = login.headers["location"]
    assert parse_qs(urlsplit(authorize).query)["redirect_uri"] == [
        f"https://{TEAM_DOMAIN}/auth/callback"
    ]
    consent = httpx.post(authorize, data={"sub": email}, verify=issuer_tls, timeout=10)
    assert consent.status_code == 302, consent.text
    callback = urlsplit(consent.headers["location"])
    # The provider sends the browser to https://TEAM_DOMAIN/auth/callback; here that is Caddy's
    # published loopback port.
    assert (callback.scheme, callback.netloc) == ("https", TEAM_DOMAIN), callback
    finish = browser.get(f"/auth/callback?{callback.query}")
    assert finish.status_code == 302, finish.text
    return browser


def test_team_runs_on_postgresql_backs_up_and_keeps_data_across_down_and_up(stacks: Stacks):
    team = _is_up(stacks.team)
    with team.client() as https:
        ready = https.get("/api/health/ready")
        assert ready.status_code == 200, ready.text
        assert https.get("/api/tasks").status_code == 401
        created = https.post("/api/tasks", json={"title": "kept in postgres"}, headers=AUTH)
        assert created.status_code == 201, created.text

    # orc's data is in the db container's PostgreSQL, which wants the password over TCP.
    db = team.container("orc-db")
    rows = db.exec("psql", "-U", "orc", "-d", "orc", "-Atc", "SELECT title FROM task").stdout
    assert rows.strip() == "kept in postgres", rows
    backup = team.container("orc-backup")
    wrong = backup.exec("psql", "postgres://orc:wrong@db:5432/orc", "-c", "SELECT 1", check=False)
    assert "password authentication failed" in wrong.stderr, wrong
    table = team.dockerd.docker("top", db.name, "-eo", "pid,uid,args").stdout
    # The server's processes; Docker runs the health check (pg_isready) as the image's user,
    # root as in the official image, and it may be running at this moment.
    server = [line.split() for line in table.strip().splitlines()[1:] if "pg_isready" not in line]
    assert server and all(fields[1] != "0" for fields in server), table

    # The backup service reaches the db and writes the dump under the real image's names.
    assert backup.exec("curl", "-fsS", "http://localhost:8080/").returncode == 0
    dumped = backup.exec("/backup.sh")
    assert "SQL backup created successfully" in dumped.stdout, dumped
    daily = sorted((team.deploy / "backups/daily").glob("orc-*.sql.gz"))
    assert len(daily) == 1, daily
    assert "kept in postgres" in gzip.decompress(daily[0].read_bytes()).decode()

    # down (volumes kept) and up again: the task is still there.
    down = team.compose("down")
    assert down.returncode == 0, down.stdout + down.stderr
    _finish_up(team, team.up())
    with _is_up(team).client() as https:  # Caddy's loopback port is a new one
        tasks = https.get("/api/tasks", headers=AUTH)
    assert tasks.status_code == 200, tasks.text
    assert [task["title"] for task in tasks.json()["items"]] == ["kept in postgres"]


def test_team_signs_in_with_oidc_through_caddy(stacks: Stacks):
    team = _is_up(stacks.team)
    browser = _sign_in(team, "owner@example.com", stacks.issuer_tls)
    me = browser.get("/auth/me").json()
    assert (me["subject"], me["via"]) == ("owner@example.com", "session"), me
    created = browser.post(
        "/api/tasks", json={"title": "signed in"}, headers={"X-CSRF-Token": me["csrf_token"]}
    )
    assert created.status_code == 201, created.text
    assert created.json()["created_by"] == "owner@example.com"
