"""Tier 2 in depth: browser sessions, CSRF, rate limiting, metrics access, WebSocket auth,
the session key, header fuzzing, and secrets kept out of logs."""

from __future__ import annotations

import asyncio
import json
import os
import random
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from orc.api.app import create_app
from orc.auth import token as token_module
from orc.auth.ratelimit import FailureLimiter
from orc.config import load_settings
from tests.in_process import LiveApp
from tests.support import OrcServer, base_env, free_port, run_orc

TOKEN = "server-token-jtxFlP_a0uzLtiWPeZ4sNvVftTCLiyYV"
METRICS_TOKEN = "metrics-token-Hehd1wTSz1DuaWhf9WcS_7-TcAObXuWE"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrcServer]:
    tmp_path = tmp_path_factory.mktemp("tier2")
    env = base_env(tmp_path)
    port = free_port()
    env.update(ORC_AUTH_TOKEN=TOKEN, ORC_BASE_URL=f"http://127.0.0.1:{port}", ORC_LOG_LEVEL="info")
    running = OrcServer(env, "--no-worker", port=port).start()
    yield running
    running.kill()


def client_from(address: str, server: OrcServer) -> httpx.Client:
    """A client whose connections come from another loopback address (its own rate budget)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=server.base_url, transport=transport, timeout=10)


def test_the_token_buys_a_browser_session_that_logout_ends(server: OrcServer):
    browser = client_from("127.0.0.2", server)
    signed_in = browser.post("/auth/session", json={"token": TOKEN})
    assert signed_in.status_code == 200
    assert signed_in.json()["role"] == "admin"
    cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    me = browser.get("/auth/me").json()
    assert (me["via"], me["role"]) == ("session", "admin")
    # Changes need our Origin (or the CSRF token); reads do not.
    assert browser.post("/api/tasks", json={"title": "x"}).status_code == 403
    ok = browser.post("/api/tasks", json={"title": "x"}, headers={"Origin": server.base_url})
    assert ok.status_code == 201
    kept = browser.cookies["orc_session"]
    out = browser.post("/auth/logout", json={}, headers={"Origin": server.base_url})
    assert out.json()["signed_out"]
    assert browser.get("/auth/me").status_code == 401
    replay = httpx.get(server.base_url + "/api/tasks", cookies={"orc_session": kept}, timeout=10)
    assert replay.status_code == 401


def test_a_session_bought_with_an_access_token_keeps_its_role_and_dies_with_it(
    server: OrcServer,
):
    assert run_orc(["user", "add", "pa@example.com", "--role", "admin"], server.env).returncode == 0
    made = run_orc(
        ["token", "create", "--name", "dash", "--role", "viewer", "--user", "pa@example.com"],
        server.env,
    )
    browser = client_from("127.0.0.7", server)
    signed_in = browser.post("/auth/session", json={"token": made.stdout.strip()})
    assert signed_in.status_code == 200 and signed_in.json()["role"] == "viewer"
    assert browser.get("/auth/me").json()["role"] == "viewer"  # not the user's admin
    assert browser.get("/api/users").status_code == 403
    origin = {"Origin": server.base_url}
    minted = browser.post("/api/tokens", json={"name": "more"}, headers=origin)
    assert minted.status_code == 403
    assert run_orc(["token", "revoke", "dash"], server.env).returncode == 0
    assert browser.get("/auth/me").status_code == 401  # the session died with its token


def test_a_wrong_token_buys_nothing(server: OrcServer):
    browser = client_from("127.0.0.3", server)
    response = browser.post("/auth/session", json={"token": TOKEN + "x"})
    assert response.status_code == 401 and "set-cookie" not in response.headers
    assert browser.post("/auth/session", json={"nope": 1}).status_code == 422


def test_repeated_failures_from_one_address_are_slowed(server: OrcServer):
    guesser = client_from("127.0.0.4", server)
    for attempt in range(10):
        answer = guesser.get("/api/tasks", headers={"Authorization": f"Bearer guess-{attempt}"})
        assert answer.status_code == 401
    limited = guesser.get("/api/tasks", headers={"Authorization": "Bearer guess-11"})
    assert limited.status_code == 429
    assert limited.json()["error"] == "too_many_attempts"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # While limited, wrong credentials stay refused with 429, on every way in ...
    assert guesser.post("/auth/session", json={"token": "guess-12"}).status_code == 429
    pat_guess = {"Authorization": "Bearer orc_pat_x"}
    assert guesser.get("/api/tasks", headers=pat_guess).status_code == 429
    # ... but the right one always passes: a guesser behind a shared address (an office's
    # NAT) must not lock out everyone else there.
    right = {"Authorization": f"Bearer {TOKEN}"}
    assert guesser.get("/api/tasks", headers=right).status_code == 200
    assert guesser.post("/auth/session", json={"token": TOKEN}).status_code == 200
    wrong = {"Authorization": "Bearer guess-13"}
    assert guesser.get("/api/tasks", headers=wrong).status_code == 429
    # Other addresses are unaffected, and probes always answer.
    other = client_from("127.0.0.5", server)
    assert other.get("/api/tasks", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert guesser.get("/api/health").status_code == 200


def test_the_limiter_forgets_after_its_window():
    now = [1000.0]
    limiter = FailureLimiter(max_failures=3, window_seconds=60, clock=lambda: now[0])
    for _ in range(3):
        limiter.record_failure("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 60
    assert limiter.retry_after("10.0.0.2") is None
    now[0] += 30
    assert limiter.retry_after("10.0.0.1") == 30
    now[0] += 31
    assert limiter.retry_after("10.0.0.1") is None


def test_websockets_authenticate_before_the_upgrade(server: OrcServer):
    url = server.base_url.replace("http", "ws") + "/api/ws"

    async def check() -> None:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url):
                pass
        assert refused.value.response.status_code == 401
        assert json.loads(refused.value.response.body)["error"] == "unauthorized"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with websockets.connect(url, additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await ws.recv()) == {"type": "pong"}
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(url + "?ticket=forged.ticket.value"):
                pass

    asyncio.run(check())


def test_revoking_an_access_token_closes_its_websocket(server: OrcServer):
    """The revocation comes from another process (the CLI) and still reaches the socket."""
    made = run_orc(["token", "create", "--name", "ws", "--role", "viewer"], server.env)
    secret = made.stdout.strip()
    url = server.base_url.replace("http", "ws") + "/api/ws"

    async def check() -> None:
        headers = {"Authorization": f"Bearer {secret}"}
        async with websockets.connect(url, additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "subscribe"}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            revoked = await asyncio.to_thread(run_orc, ["token", "revoke", "ws"], server.env)
            assert revoked.returncode == 0, revoked.stderr
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(5):
                    while True:
                        await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401

    asyncio.run(check())
    answer = server.get("/api/tasks", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 401


def test_secrets_never_reach_the_logs(server: OrcServer):
    # The server is the module's: earlier tests' lines (an /api/ws one among them) come first.
    start = len(server.logs())
    secret = run_orc(["token", "create", "--name", "logs"], server.env).stdout.strip()
    browser = client_from("127.0.0.6", server)
    browser.post("/auth/session", json={"token": TOKEN})
    cookie = browser.cookies["orc_session"]
    browser.get("/api/tasks")
    server.get("/api/tasks", headers={"Authorization": f"Bearer {secret}"})
    server.get("/api/tasks", headers={"Authorization": f"Bearer {secret}x"})
    ticket = browser.post("/api/ws/ticket", headers={"Origin": server.base_url}).json()["ticket"]
    server.get(f"/api/ws?ticket={ticket}")

    # The log writer writes lines after the answers, in order: once a last request's line is
    # there, so are this test's (an earlier test's WebSocket line may come after ``start``).
    last = f"/api/last-{uuid.uuid4().hex}"
    server.get(last, headers={"Authorization": f"Bearer {TOKEN}"})
    deadline = time.monotonic() + 10
    while last not in (logs := server.logs()[start:]):
        assert time.monotonic() < deadline, logs
        time.sleep(0.05)
    assert logs.count('"path":"/api/tasks"') >= 3  # the access log is on: the check means something
    for value in (TOKEN, secret, cookie, ticket):
        assert value not in logs


# --- /api/metrics access ---------------------------------------------------------------------


def _metrics_app(app_factory, tmp_path: Path, **env: str) -> LiveApp:
    tmp_path.mkdir(exist_ok=True)
    return app_factory(base_env(tmp_path), ORC_AUTH_TOKEN=TOKEN, **env)


def test_the_metrics_token_reads_metrics_and_nothing_else(app_factory, tmp_path: Path):
    server = _metrics_app(app_factory, tmp_path, ORC_METRICS_TOKEN=METRICS_TOKEN)
    scraper = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert server.get("/api/metrics", headers=scraper).status_code == 200
    assert server.get("/api/tasks", headers=scraper).status_code == 401
    assert server.get("/api/metrics").status_code == 401
    admin = {"Authorization": f"Bearer {TOKEN}"}
    assert server.get("/api/metrics", headers=admin).status_code == 200
    viewer = run_orc(["token", "create", "--name", "v", "--role", "viewer"], server.env)
    viewer_headers = {"Authorization": f"Bearer {viewer.stdout.strip()}"}
    refused = server.get("/api/metrics", headers=viewer_headers)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"


def test_metrics_open_to_loopback_only_when_asked(app_factory, tmp_path: Path):
    closed = _metrics_app(app_factory, tmp_path / "a")
    assert closed.get("/api/metrics").status_code == 401
    closed.close()  # one app per process: Tortoise's connections are global
    opened = _metrics_app(app_factory, tmp_path / "b", ORC_METRICS_PUBLIC_LOOPBACK="true")
    assert opened.get("/api/metrics").status_code == 200
    assert opened.client("10.1.2.3").get("/api/metrics").status_code == 401
    assert opened.get("/api/tasks").status_code == 401
    # Through a proxy on this machine every client looks local: forwarded requests are not.
    forwarded = opened.get("/api/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert forwarded.status_code == 401


# --- the session key ------------------------------------------------------------------------


def test_the_session_key_is_made_once_private_and_survives_restarts(app_factory, tmp_path):
    env = base_env(tmp_path)
    env["ORC_AUTH_TOKEN"] = TOKEN
    first = app_factory(env)
    key_file = tmp_path / "home" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text()
    browser = first.client()
    assert browser.post("/auth/session", json={"token": TOKEN}).status_code == 200
    first.close()
    second = app_factory(env)
    assert key_file.read_text() == key
    # The session outlived the restart.
    assert second.client(cookies=browser.cookies).get("/auth/me").status_code == 200


def test_a_readable_session_key_refuses_to_start(tmp_path: Path):
    env = base_env(tmp_path)
    env["ORC_AUTH_TOKEN"] = TOKEN
    key_file = tmp_path / "home" / "secret_key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text("k" * 64)
    os.chmod(key_file, 0o644)
    result = run_orc(["serve", "--port", str(free_port())], env)
    assert result.returncode == 2
    assert f"chmod 600 {key_file}" in result.stderr and "Traceback" not in result.stderr


# --- in process: fuzzing and the comparison path ---------------------------------------------


@pytest.fixture
def app_client(tmp_path: Path, schema_templates):
    settings = load_settings(
        environ={"ORC_HOME": str(tmp_path / "home"), "ORC_AUTH_TOKEN": TOKEN}, cwd=tmp_path
    )
    schema_templates.copy_sqlite(settings.database.sqlite_path)
    app = create_app(settings)
    app.ctx.auth.limiter = FailureLimiter(max_failures=10**9)  # fuzzing is not guessing here
    return app.asgi_client


def _malformed_values(count: int) -> list[str]:
    rng = random.Random(20261127)
    alphabet = [chr(c) for c in range(0x20, 0x7F)] + ["\t", "é", "ÿ", "\u00a0", "\x80"]
    prefixes = [
        "",
        "Bearer",
        "Bearer ",
        "bearer  ",
        "BEARER\t",
        "Basic ",
        "Bearer orc_pat_",
        "orc_pat_",
        "Bearer a.b.c",
        "Bearer ..",
        "Bearer eyJ",
        "Token ",
        "Bearer " + TOKEN[:-1],
    ]
    values = []
    for index in range(count):
        body = "".join(rng.choice(alphabet) for _ in range(rng.choice((0, 1, 5, 40, 300))))
        if index % 7 == 0:
            body = ".".join(body[i : i + 10] for i in range(0, len(body), 10))  # JWT-shaped
        # HTTP itself drops whitespace around a header value; the client refuses to send it.
        values.append((prefixes[index % len(prefixes)] + body).strip(" \t"))
    values += ["Bearer " + "A" * 8000, "Bearer " + TOKEN + " extra", "Bearer  " + TOKEN[1:]]
    return values


def test_malformed_authorization_headers_are_401_json_never_500(app_factory, tmp_path: Path):
    """Thousands of malformed values through the whole app; each source address stays under
    the rate limit (10 failures), so every answer is the auth check's own."""
    live = app_factory(base_env(tmp_path), ORC_AUTH_TOKEN=TOKEN)
    values = _malformed_values(3000)
    statuses: dict[int, int] = {}
    for start in range(0, len(values), 10):
        address = f"127.0.{10 + start // 2500}.{1 + (start // 10) % 250}"
        client = live.client(address)
        for value in values[start : start + 10]:
            headers = {"Authorization": value.encode("latin-1")}
            response = client.get("/api/tasks", headers=headers)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code == 401, (value, response.text)
            assert response.json()["error"] == "unauthorized"
        client.close()
    assert statuses == {401: len(values)}
    assert live.get("/api/health").status_code == 200


async def test_the_token_is_compared_in_constant_time(app_client, monkeypatch):
    calls = []
    real = token_module.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(token_module.hmac, "compare_digest", spy)
    _, response = await app_client.get("/api/tasks", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert (b"wrong", TOKEN.encode()) in calls


async def test_cookies_are_secure_behind_https(tmp_path: Path, schema_templates):
    settings = load_settings(
        environ={
            "ORC_HOME": str(tmp_path / "home"),
            "ORC_AUTH_TOKEN": TOKEN,
            "ORC_BASE_URL": "https://orc.example.com",
        },
        cwd=tmp_path,
    )
    schema_templates.copy_sqlite(settings.database.sqlite_path)
    client = create_app(settings).asgi_client
    _, response = await client.post("/auth/session", json={"token": TOKEN})
    cookie = response.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie
