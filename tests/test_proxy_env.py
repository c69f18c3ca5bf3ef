"""Behind a corporate proxy: loopback calls never use it, outbound calls honour HTTP(S)_PROXY and
NO_PROXY. The proxy is a real one (proxy.py from PyPI) on loopback; its access log shows what
went through it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from orc.auth.oidc import OidcProvider
from orc.config import load_settings
from tests.oidc_provider import run_provider
from tests.support import OrcServer, base_env, free_port, moto_s3_server, run_orc

pytestmark = pytest.mark.timeout(120)
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@dataclass
class ForwardProxy:
    url: str
    log: Path

    def requests(self) -> list[str]:
        """The access log's request lines, e.g. ``GET 127.0.0.1:8080/api/health``."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line.split(" - ")[3] for line in text.splitlines() if "access_log" in line]


@contextlib.contextmanager
def forward_proxy(tmp_path: Path, *options: str) -> Iterator[ForwardProxy]:
    """proxy.py on a free loopback port, one process, logging every request."""
    port = free_port()
    log = tmp_path / f"proxy-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "proxy"),
                *("--hostname", "127.0.0.1", "--port", str(port)),
                *("--threaded", "--num-workers", "1", "--num-acceptors", "1"),
                *("--log-level", "INFO", "--log-file", str(log)),
                *options,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, "proxy.py did not start"
            time.sleep(0.1)
        yield ForwardProxy(f"http://127.0.0.1:{port}", log)
    finally:
        process.terminate()
        process.wait(10)


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = base_env(tmp_path)
    for name in PROXY_VARIABLES:
        env.pop(name, None)
        env.pop(name.lower(), None)
    return env


def _wait_logged(proxy: ForwardProxy, fragment: str) -> list[str]:
    # proxy.py writes its access line just after answering: give it a moment.
    deadline = time.monotonic() + 5
    while not any(fragment in line for line in proxy.requests()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return proxy.requests()


# ---- loopback: orc healthcheck


def test_healthcheck_never_goes_through_the_proxy(tmp_path: Path):
    env = _clean_env(tmp_path)
    server = OrcServer(env, "--no-worker").start()
    # A corporate proxy cannot reach the container's loopback: this one refuses it.
    with forward_proxy(
        tmp_path,
        *("--plugins", "proxy.plugin.FilterByUpstreamHostPlugin"),
        *("--filtered-upstream-hosts", "127.0.0.1,localhost"),
    ) as proxy:
        try:
            through = httpx.get(
                f"{server.base_url}/api/health", proxy=proxy.url, timeout=10, trust_env=False
            )
            assert through.status_code >= 400  # what a probe through the proxy would get
            _wait_logged(proxy, f"127.0.0.1:{server.port}/api/health")
            seen = len(proxy.requests())
            assert seen == 1

            probe_env = {
                **env,
                "ORC_PORT": str(server.port),
                "HTTP_PROXY": proxy.url,
                "http_proxy": proxy.url,
                "HTTPS_PROXY": proxy.url,
            }
            for args in (["healthcheck"], ["healthcheck", "--ready"]):
                result = run_orc(args, probe_env)
                assert result.returncode == 0, result.stdout + result.stderr
            assert len(proxy.requests()) == seen
        finally:
            server.kill()


# ---- outbound: OIDC discovery and signing keys (httpx through authlib)


def _discover(tmp_path: Path, issuer: str, monkeypatch: pytest.MonkeyPatch, **proxy_env: str):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in proxy_env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(
        {
            "ORC_HOME": str(tmp_path / "home"),
            "ORC_AUTH_TYPE": "oidc",
            "ORC_OIDC_ISSUER": issuer,
            "ORC_OIDC_CLIENT_ID": "orc",
            "ORC_OIDC_CLIENT_SECRET": "client-secret-value",
        },
        cwd=tmp_path,
    )
    provider = OidcProvider(settings)

    async def discover_and_fetch_keys() -> None:
        metadata = await provider.discover()
        await provider._get_json(metadata.jwks_uri, "signing keys")

    asyncio.run(discover_and_fetch_keys())


def test_oidc_discovery_and_keys_go_through_http_proxy(tmp_path: Path, monkeypatch):
    with run_provider() as idp, forward_proxy(tmp_path) as proxy:
        host = idp.issuer.removeprefix("http://").rstrip("/")
        _discover(tmp_path, idp.issuer, monkeypatch, HTTP_PROXY=proxy.url)
        requests = _wait_logged(proxy, "jwks")
        assert any(f"GET {host}/.well-known/openid-configuration" in r for r in requests), requests
        assert any("jwks" in r for r in requests), requests


def test_no_proxy_keeps_oidc_calls_direct(tmp_path: Path, monkeypatch):
    with run_provider() as idp, forward_proxy(tmp_path) as proxy:
        _discover(
            tmp_path, idp.issuer, monkeypatch, HTTP_PROXY=proxy.url, NO_PROXY="127.0.0.1,localhost"
        )
        assert proxy.requests() == []


# ---- outbound: Litestream to S3


def _loopback_name() -> str:
    """A host name that resolves to loopback but is neither ``localhost`` nor an address: Go
    never proxies those two, whatever HTTP_PROXY says, so a local S3 must be reached by name."""
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        address = ""
    if name == "localhost" or not address.startswith("127."):
        pytest.skip(f"this machine's name {name!r} does not resolve to loopback")
    return name


@pytest.fixture
def s3_by_name(tmp_path: Path) -> Iterator[str]:
    with moto_s3_server(tmp_path / "moto.log") as port:
        yield f"http://{_loopback_name()}:{port}"


def _restore_from_s3(tmp_path: Path, endpoint: str, **proxy_env: str):
    env = _clean_env(tmp_path)
    db = Path(env["ORC_HOME"]) / "orc.db"
    config = tmp_path / "litestream.yml"
    config.write_text(
        f"dbs:\n  - path: {db}\n    replica:\n      type: s3\n      bucket: orc-backups\n"
        f"      path: orc.db\n      region: us-east-1\n      endpoint: {endpoint}\n"
        "      force-path-style: true\n"
    )
    env.update(
        ORC_LITESTREAM_ENABLED="true",
        ORC_LITESTREAM_CONFIG=str(config),
        LITESTREAM_ACCESS_KEY_ID="test",
        LITESTREAM_SECRET_ACCESS_KEY="test",
        **proxy_env,
    )
    return run_orc(["replication", "restore", "--if-missing"], env)


def test_litestream_reaches_s3_through_the_proxy_and_not_past_no_proxy(tmp_path, s3_by_name):
    host = s3_by_name.removeprefix("http://")
    with forward_proxy(tmp_path) as proxy:
        result = _restore_from_s3(tmp_path, s3_by_name, HTTP_PROXY=proxy.url)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "no replica" in result.stdout
        assert any(host in r for r in _wait_logged(proxy, host)), proxy.requests()
    with forward_proxy(tmp_path) as proxy:
        name = host.partition(":")[0]
        result = _restore_from_s3(tmp_path, s3_by_name, HTTP_PROXY=proxy.url, NO_PROXY=name)
        assert result.returncode == 0, result.stdout + result.stderr
        assert proxy.requests() == []
