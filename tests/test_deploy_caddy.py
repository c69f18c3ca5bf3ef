"""The real Caddy (Debian's caddy) in front of a real `orc serve`, with the repository's Caddyfiles.

Each Caddyfile is imported under test-only global options: no admin API, high loopback ports,
certificates from Caddy's own local CA (never ACME), storage in a temp dir. The site block, the
part production runs, is the file itself. Clients connect from 127.0.0.2 so the address that orc
sees can only be right if it comes from Caddy's X-Forwarded-For.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.deploy_support import REPO, SECURITY_HEADERS, make_certificate
from tests.support import OrcServer, base_env, free_port

CADDY = shutil.which("caddy")
pytestmark = pytest.mark.skipif(CADDY is None, reason="caddy is not installed (scripts/test does)")
CLIENT_ADDRESS = "127.0.0.2"


class Caddy:
    """`caddy run` with one of the repository's Caddyfiles and test-only global options."""

    def __init__(self, tmp: Path, caddyfile: Path, env: dict[str, str], local_certs: bool):
        self.tmp = tmp
        self.https_port = free_port()
        self.http_port = free_port()
        self.storage = tmp / "caddy-data"
        self.config = tmp / "Caddyfile.test"
        options = [
            "admin off",
            f"http_port {self.http_port}",
            f"https_port {self.https_port}",
            "default_bind 127.0.0.1",
            "skip_install_trust",
            "auto_https disable_redirects",
            f"storage file_system {self.storage}",
        ]
        if local_certs:
            options.append("local_certs")
        self.config.write_text(
            "{\n" + "".join(f"\t{o}\n" for o in options) + "}\n\nimport " + str(caddyfile) + "\n"
        )
        self.env = caddy_env(tmp) | env
        self.log_path = tmp / "caddy.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Caddy:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(CADDY), "run", "--config", str(self.config), "--adapter", "caddyfile"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def local_root(self) -> Path:
        return self.storage / "pki" / "authorities" / "local" / "root.crt"


def caddy_env(tmp: Path) -> dict[str, str]:
    """HOME and XDG dirs in tmp, so Caddy never writes to the user's own directories."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp),
        "XDG_DATA_HOME": str(tmp / "xdg-data"),
        "XDG_CONFIG_HOME": str(tmp / "xdg-config"),
    }


def wait_for_https(caddy: Caddy, tls: ssl.SSLContext, timeout: float = 30) -> None:
    """Until Caddy completes a verified TLS handshake (its certificate is issued by then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert caddy.process is not None
        if caddy.process.poll() is not None:
            raise AssertionError(f"caddy exited:\n{caddy.logs()}")
        try:
            client(tls).get(f"https://localhost:{caddy.https_port}/api/health").close()
            return
        except (httpx.HTTPError, ssl.SSLError, OSError):
            time.sleep(0.2)
    raise AssertionError(f"no HTTPS from caddy within {timeout}s:\n{caddy.logs()}")


def client(tls: ssl.SSLContext) -> httpx.Client:
    """An HTTPS client that verifies against ``tls`` and connects from CLIENT_ADDRESS."""
    return httpx.Client(
        transport=httpx.HTTPTransport(verify=tls, local_address=CLIENT_ADDRESS), timeout=10
    )


def access_record(server: OrcServer, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for record in server.log_records():
            if record.get("logger") == "orc.access" and record.get("request_id") == request_id:
                return record
        time.sleep(0.05)
    raise AssertionError(f"no access log line for {request_id}:\n{server.logs()}")


# The tests of `proxied` share it, so they run in one test process (each starts a pair).
SHARES_PROXIED = pytest.mark.xdist_group("caddy_proxied")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """orc (trusting one proxy) behind Caddy with the production Caddyfile: one pair for the
    tests that use it, since each only reads its own requests' answers and log lines."""
    tmp_path = tmp_path_factory.mktemp("proxied")
    env = dict(base_env(tmp_path), ORC_PROXIES_COUNT="1", ORC_ACCESS_LOG_PROBES="true")
    server = OrcServer(env, log_dir=tmp_path)
    caddy = Caddy(
        tmp_path,
        REPO / "Caddyfile",
        {"DOMAIN": "localhost", "ORC_UPSTREAM": f"127.0.0.1:{server.port}"},
        local_certs=True,
    )
    try:
        server.start()
        caddy.start()
        deadline = time.monotonic() + 30
        while not caddy.local_root.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert caddy.local_root.exists(), caddy.logs()
        tls = ssl.create_default_context(cafile=str(caddy.local_root))
        wait_for_https(caddy, tls)
        yield server, caddy, tls
    finally:
        caddy.stop()
        server.kill()


@SHARES_PROXIED
def test_health_over_https_carries_the_security_headers_and_no_server_header(proxied):
    _, caddy, tls = proxied
    with client(tls) as http:
        response = http.get(f"https://localhost:{caddy.https_port}/api/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    assert "server" not in response.headers
    # Caddy's access log: one JSON object per request on stdout.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        records = [json.loads(ln) for ln in caddy.logs().splitlines() if ln.startswith("{")]
        access = [r for r in records if r.get("logger", "").startswith("http.log.access")]
        if any(r["request"]["uri"] == "/api/health" and r["status"] == 200 for r in access):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"no JSON access log line for /api/health:\n{caddy.logs()}")


@SHARES_PROXIED
def test_responses_are_gzipped_when_the_client_accepts_it(proxied):
    _, caddy, tls = proxied
    url = f"https://localhost:{caddy.https_port}/docs/openapi.json"
    with client(tls) as http:
        zipped = http.get(url, headers={"Accept-Encoding": "gzip"})
        plain = http.get(url, headers={"Accept-Encoding": "identity"})
    assert zipped.headers.get("content-encoding") == "gzip"
    assert plain.headers.get("content-encoding") is None
    assert zipped.json() == plain.json()


@SHARES_PROXIED
def test_the_client_address_and_scheme_orc_sees_are_the_real_ones(proxied):
    server, caddy, tls = proxied
    with client(tls) as http:
        response = http.get(
            f"https://localhost:{caddy.https_port}/api/health",
            # A forged header: Caddy replaces it, orc trusts only what its one proxy says.
            headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "http"},
        )
    record = access_record(server, response.headers["x-request-id"])
    assert record["remote"] == CLIENT_ADDRESS
    assert record["scheme"] == "https"


def test_forwarded_headers_are_ignored_when_no_proxy_is_trusted(
    migrated, sqlite_env, server_factory
):
    # ORC_PROXIES_COUNT defaults to 0
    server = server_factory(dict(sqlite_env, ORC_ACCESS_LOG_PROBES="true")).start()
    response = server.get(
        "/api/health", headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    )
    record = access_record(server, response.headers["x-request-id"])
    assert record["remote"] == "127.0.0.1"
    assert record["scheme"] == "http"


@SHARES_PROXIED
def test_a_websocket_works_through_the_proxy(proxied):
    _, caddy, tls = proxied

    async def scenario() -> dict[str, Any]:
        url = f"wss://localhost:{caddy.https_port}/api/ws"
        async with connect(url, ssl=tls) as ws:
            await ws.send(json.dumps({"type": "subscribe", "task_id": "*"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "subscribed"
            created = await asyncio.to_thread(
                lambda: client(tls).post(
                    f"https://localhost:{caddy.https_port}/api/tasks", json={"title": "via wss"}
                )
            )
            assert created.status_code == 201
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if message["type"] == "event" and message["event_type"] == "task_created":
                    return message

    message = asyncio.run(scenario())
    assert message["task_id"] == "TASK-001"


def test_the_airgap_caddyfile_serves_the_mounted_certificate_without_acme(
    tmp_path: Path, migrated, sqlite_env: dict[str, str], server_factory
):
    cert, key = tmp_path / "orc.crt", tmp_path / "orc.key"
    make_certificate(cert, key, "localhost")
    server = server_factory(dict(sqlite_env, ORC_PROXIES_COUNT="1"), log_dir=tmp_path).start()
    caddy = Caddy(
        tmp_path,
        REPO / "deploy" / "Caddyfile.airgap",
        {
            "DOMAIN": "localhost",
            "ORC_UPSTREAM": f"127.0.0.1:{server.port}",
            "ORC_TLS_CERT": str(cert),
            "ORC_TLS_KEY": str(key),
        },
        local_certs=False,
    ).start()
    try:
        # Trusting only the mounted certificate: the handshake proves Caddy serves that one.
        tls = ssl.create_default_context(cafile=str(cert))
        wait_for_https(caddy, tls)
        with client(tls) as http:
            response = http.get(f"https://localhost:{caddy.https_port}/api/health")
        assert response.status_code == 200
        assert response.headers.get("x-frame-options") == "DENY"
        assert "acme" not in caddy.logs().lower()
    finally:
        caddy.stop()
