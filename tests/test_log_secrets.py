"""No token, ticket, cookie or password in any log line, at any level, from any logger.

A real `orc serve` (API and job worker) at ORC_LOG_LEVEL=debug is driven with every kind of
secret, the right and the wrong way (Sanic logs the whole URL of a failing request, a
WebSocket's ``?ticket=`` included); then every captured line is searched for each secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
import websockets

from orc.runtime.redact import REDACTED, RedactSecrets
from tests.support import OrcServer, base_env, free_port, run_orc

SERVER_TOKEN = "log-secrets-Wd5Nq8Ks2Vb7Xm4Rt9Lc3Hy6Jf1Pz0Ga"
METRICS_TOKEN = "log-metrics-Bt6Yh1Qm9Ld4Ws7Kx2Nc8Vr3Fj5Pz0Ea"
DB_PASSWORD = "db-Pa55-Zk4Vm8Qx2Ln6"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrcServer]:
    tmp_path = tmp_path_factory.mktemp("log-secrets")
    env = base_env(tmp_path)
    port = free_port()
    env.update(
        ORC_AUTH_TOKEN=SERVER_TOKEN,
        ORC_METRICS_TOKEN=METRICS_TOKEN,
        ORC_BASE_URL=f"http://127.0.0.1:{port}",
        ORC_LOG_LEVEL="debug",
        ORC_LOG_FORMAT="text",
    )
    running = OrcServer(env, port=port).start()
    yield running
    running.kill()


def _drive(server: OrcServer) -> list[str]:
    """Use every secret against the server, rightly and wrongly; return the secrets used."""
    base = server.base_url
    pat = run_orc(["token", "create", "--name", "logs"], server.env).stdout.strip()
    assert pat.startswith("orc_pat_")
    browser = httpx.Client(base_url=base, timeout=10)
    ours = {"Origin": base}
    assert browser.post("/auth/session", json={"token": SERVER_TOKEN}, headers=ours).is_success
    cookie = browser.cookies["orc_session"]
    browser.post("/auth/session", json={"token": SERVER_TOKEN + "x"}, headers=ours)
    browser.post("/auth/session", content=f'{{"token": "{pat}"'.encode(), headers=ours)
    browser.get("/api/tasks")
    server.get("/api/tasks", headers={"Authorization": f"Bearer {pat}"})
    server.get("/api/tasks", headers={"Authorization": f"Bearer {pat}x"})
    server.get("/api/tasks", headers={"Authorization": f"Bearer {SERVER_TOKEN}y"})
    server.get("/api/tasks", headers={"Authorization": f"Basic {SERVER_TOKEN}"})
    server.get("/api/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    server.get(f"/api/tasks?token={SERVER_TOKEN}&ticket={pat}")
    server.get("/api/tasks", headers={"Cookie": f"orc_session={cookie}x; other=1"})
    # A job for the worker, which logs too.
    queued = httpx.post(
        base + "/api/backups", headers={"Authorization": f"Bearer {SERVER_TOKEN}"}, timeout=10
    )
    assert queued.status_code in (200, 201, 202), queued.text
    tickets = [browser.post("/api/ws/ticket", headers=ours).json()["ticket"] for _ in range(4)]
    ws_url = base.replace("http", "ws") + "/api/ws"

    async def sockets() -> None:
        async with websockets.connect(f"{ws_url}?ticket={tickets[0]}") as ws:
            await ws.send(json.dumps({"type": "ping"}))
            await ws.recv()
            await ws.send("{not json")  # a bad frame, answered or closed
            await ws.close()
        for ticket in (tickets[0], tickets[1] + "x"):  # used, forged: refused with a log line
            with pytest.raises(websockets.InvalidStatus):
                async with websockets.connect(f"{ws_url}?ticket={ticket}"):
                    pass
        # A since= the server cannot read: an error inside the WebSocket route, for which
        # Sanic's error logger wrote the whole URL, ticket and all (until that error is gone).
        with contextlib.suppress(Exception):
            async with websockets.connect(f"{ws_url}?ticket={tickets[3]}&since=%C2%B2") as ws:
                await ws.recv()
        # A socket that goes away in the middle of the handshake.
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            f"GET /api/ws?ticket={tickets[2]} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()

    asyncio.run(sockets())
    server.get(f"/api/ws?ticket={tickets[1]}")  # a plain GET on the WebSocket route
    return [SERVER_TOKEN, METRICS_TOKEN, pat, cookie, *tickets]


def test_no_secret_reaches_any_log_line_at_debug(server: OrcServer):
    used = _drive(server)
    server.get("/api/health")
    lines = server.logs().splitlines()
    assert any("GET /api/tasks" in line for line in lines)  # the logs are what we think
    assert any("huey" in line.lower() or "orc.jobs" in line for line in lines)
    leaks = [
        (secret[:12], line)
        for line in lines
        for secret in used
        if secret in line or secret[:20] in line
    ]
    assert leaks == []
    assert not [line for line in lines if "orc_pat_" in line and REDACTED not in line]
    assert not [line for line in lines if "eyJ" in line]


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ("Exception occurred while handling uri: 'ws://h/api/ws?ticket=eyJa.eyJb.c'", "eyJa"),
        ("GET /callback?code=abc123def456&state=xyz789uvw012", "abc123def456"),
        ("headers: {'authorization': 'Bearer s3cr3t-t0ken-value'}", "s3cr3t-t0ken-value"),
        ("Cookie: orc_session=abcdef123456; theme=dark", "abcdef123456"),
        ("set-cookie: orc_login=abcdef123456; Path=/", "abcdef123456"),
        ('body b\'{"token": "hunter2hunter2"}\'', "hunter2hunter2"),
        ("connect postgres://orc:Pa55w0rd!x@db:5432/orc", "Pa55w0rd!x"),
        ("presented orc_pat_AbC123-xyz_789", "AbC123-xyz_789"),
        ("configured value literal-secret-value-42 in a message", "literal-secret-value-42"),
    ],
)
def test_the_filter_removes_each_kind_of_secret(message: str, secret: str):
    record = logging.LogRecord("sanic.error", logging.ERROR, __file__, 1, message, None, None)
    record.path = message  # extra fields too
    try:
        raise ValueError(message)
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactSecrets(["literal-secret-value-42"]).filter(record)
    for text in (record.getMessage(), record.path, record.exc_text or ""):
        assert secret not in text and REDACTED in text


def test_the_filter_keeps_ordinary_lines_as_they_are():
    message = "GET /api/tasks?limit=5&status=running 200; use Authorization: Bearer <token>"
    record = logging.LogRecord("orc.access", logging.INFO, __file__, 1, "%s", (message,), None)
    RedactSecrets([]).filter(record)
    assert record.getMessage() == message


def test_the_filter_is_on_the_handler_that_writes_every_loggers_lines(capsys):
    from orc.runtime.logs import output_handler, setup_logging, stop_writer

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging("debug", "text", ["configured-secret-123456"])
        handler = output_handler()
        assert handler is not None
        assert any(isinstance(f, RedactSecrets) for f in handler.filters)
        logging.getLogger("some.library").warning("connecting with configured-secret-123456")
        stop_writer()  # writes what the writer thread still holds
    finally:
        stop_writer()
        root.handlers[:] = handlers
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "connecting with" in err and "configured-secret-123456" not in err
