"""No 500 from any input (issue 12): each hostile input the review found answers a 4xx with the
JSON error shape (on the WebSocket: an error frame or a close code), and the server's log gets
one line for it, never a traceback. Against a real `orc serve` with token auth, on both
databases; the database-down case in-process (the test controls the outage).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from orc.auth.token import generate_token
from orc.db.models import User
from orc.runtime.logs import ExceptionOnOneLine, JsonFormatter
from tests.api_client import assert_error
from tests.conftest import ADMIN_URL
from tests.in_process import LiveApp
from tests.oidc_provider import Provider, run_provider
from tests.oidc_provider import oidc_env as provider_env
from tests.support import OrcServer, free_port

DEEP = "[" * 100_000 + "]" * 100_000
TOO_BIG_ID = 2**70


def raw_get(server: OrcServer, path: str) -> tuple[int, dict[str, Any]]:
    """GET ``path`` exactly as written (httpx would normalise ``/app/.``)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def assert_no_traceback(server: OrcServer) -> None:
    records = server.log_records()
    assert records, server.logs()
    broken = [r for r in records if "exception" in r or r.get("level") in ("error", "critical")]
    assert not broken, json.dumps(broken, indent=1)[:3000]
    assert "Traceback" not in server.logs()


async def test_hostile_inputs_answer_4xx_json_and_log_no_traceback(
    server_factory, migrated, orc_env
):
    token = generate_token()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {**orc_env, "ORC_AUTH_TOKEN": token, "ORC_BASE_URL": base_url}
    server = server_factory(env, "--no-worker", port=port).start()
    auth = {"Authorization": f"Bearer {token}"}
    as_json = {"Content-Type": "application/json", "Origin": base_url}

    for path in ("/app/", "/app/.", "/app/x%00", "/app/%2e%2e/x"):
        status, body = raw_get(server, path)
        assert (status, set(body)) == (404, {"error", "message"}), (path, status, body)

    with httpx.Client(base_url=base_url, timeout=30) as http:
        task_id = http.post("/api/tasks", json={"title": "target"}, headers=auth).json()["id"]
        bodies: list[tuple[str, dict[str, str], str]] = [
            ("/api/tasks", auth, DEEP),
            (f"/api/tasks/{task_id}/usage", auth, DEEP),
            ("/auth/session", {}, DEEP),  # no credentials at all
            ("/api/tasks", auth, '{"title": "a", "title": "b"}'),
            ("/auth/session", {}, '{"token": "=", "token": "' + token + '"}'),
        ]
        for path, headers, body in bodies:
            response = http.post(path, content=body, headers={**as_json, **headers})
            assert_error(response, 400, "invalid_json")
        assert http.get("/api/tasks", headers=auth).json()["total"] == 1
        assert "orc_session" not in http.cookies

        # Ids beyond any row (and beyond 64 bits): 404, on every int path parameter.
        for method, path, body in (
            ("DELETE", f"/api/tokens/{TOO_BIG_ID}", None),
            ("PATCH", f"/api/users/{TOO_BIG_ID}", {"role": "viewer"}),
            ("PATCH", f"/api/users/{2**31}", {"role": "viewer"}),  # past PostgreSQL's integer
            ("DELETE", "/api/tokens/-1", None),
        ):
            response = http.request(method, path, json=body, headers=auth)
            assert_error(response, 404)
        for query in (f"since={TOO_BIG_ID}", "since=²", "limit=1_0", "since=" + "9" * 5000):
            assert_error(http.get(f"/api/events?{query}", headers=auth), 400, "bad_query")

        # A browser session with a non-ASCII Origin or CSRF token: refused, not a crash.
        signed_in = http.post("/auth/session", json={"token": token}, headers=as_json)
        assert signed_in.status_code == 200, signed_in.text
        for header, value in (("Origin", "https://ünïcode.test"), ("X-CSRF-Token", "tökén")):
            response = http.post(
                "/api/tasks", json={"title": "x"}, headers={header: value.encode("utf-8")}
            )
            assert_error(response, 403, "csrf_failed")

    ws_base = f"ws://127.0.0.1:{port}/api/ws"
    async with connect(f"{ws_base}?since=%C2%B2", additional_headers=auth) as ws:
        error = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert (error["type"], error["error"]) == ("error", "bad_query"), error
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    async with connect(ws_base, additional_headers=auth, max_size=None) as ws:
        await ws.send(DEEP)
        error = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert error["type"] == "error" and "deeper" in error["message"], error
        await ws.send(json.dumps({"type": "subscribe", "task_id": "*", "since": TOO_BIG_ID}))
        error = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert error["type"] == "error", error
        await ws.send(json.dumps({"type": "ping"}))  # still usable
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}

    assert_no_traceback(server)


def test_every_int_path_parameter_refuses_an_id_beyond_the_columns(live_app: LiveApp):
    """The class, not the two examples: every route with an int parameter, every method."""
    routes = [
        r for r in live_app.app.router.routes if any(p.cast is not str for p in r.params.values())
    ]
    int_routes = [r for r in routes if any(p.label == "int" for p in r.params.values())]
    assert int_routes, "expected /api/tokens/<id:int> and /api/users/<id:int>"
    for route in int_routes:
        path = "/" + route.path
        for param in route.params.values():
            path = path.replace(f"<{param.name}:int>", str(TOO_BIG_ID))
        for method in route.methods:
            response = live_app.http.request(method, path, json={})
            assert_error(response, 404)


# --- the database is unavailable --------------------------------------------------------------


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(ADMIN_URL, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def test_with_the_database_unavailable_the_api_answers_503_database_unavailable(
    app_factory,
    migrated: None,
    orc_env: dict[str, str],
    database_url: str,
    caplog: pytest.LogCaptureFixture,
):
    """PostgreSQL refusing connections (its existing ones cut), or SQLite locked by another
    writer past the busy timeout: 503 with Retry-After, one log line, no traceback."""
    live = app_factory(orc_env)
    assert live.http.post("/api/tasks", json={"title": "before"}).status_code == 201
    caplog.set_level(logging.WARNING, logger="orc.errors")
    if database_url.startswith("sqlite"):
        holder = sqlite3.connect(live.settings.database.sqlite_path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # the write lock, held until the test lets go
        try:
            responses = [live.http.post("/api/tasks", json={"title": "while locked"})]
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    else:
        name = database_url.rpartition("/")[2].partition("?")[0]
        asyncio.run(_admin(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
        asyncio.run(
            _admin(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
        )
        try:
            responses = [
                live.http.get("/api/tasks"),
                live.http.post("/api/tasks", json={"title": "while down"}),
                live.http.get("/api/tasks"),
            ]
        finally:
            asyncio.run(_admin(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
    for response in responses:
        assert_error(response, 503, "database_unavailable")
        assert response.headers["Retry-After"].isdigit()
    records = [r for r in caplog.records if r.name == "orc.errors"]
    assert len(records) == len(responses), [r.getMessage() for r in records]
    assert all(r.exc_info is None for r in records)
    # Back once the database is: nothing was written meanwhile.
    assert [t["title"] for t in live.http.get("/api/tasks").json()["items"]] == ["before"]


# --- what an identity provider sends ----------------------------------------------------------


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with run_provider() as running:
        yield running


def test_a_long_return_to_and_claims_longer_than_the_columns_are_4xx(
    provider: Provider, app_factory, migrated: None, orc_env: dict[str, str], tmp_path: Path
):
    env = provider_env(orc_env, provider, free_port(), "orc-test")
    live = app_factory(env)
    response = live.http.get("/auth/login", params={"return_to": "/" + "a" * 600})
    assert_error(response, 400, "bad_query")
    assert live.http.get("/auth/login", params={"return_to": "/tasks"}).status_code == 302

    def bearer(**claims: Any) -> httpx.Response:
        sub = claims.pop("sub", "someone@example.com")
        token = provider.forge(provider.claims("orc-test", sub, **claims))
        return live.http.get("/auth/me", headers={"Authorization": f"Bearer {token}"})

    for claims in ({"sub": "s" * 300}, {"email": "e" * 320 + "@example.com"}):
        refused = bearer(**claims)
        assert refused.status_code == 401, refused.text
        assert "longer than" in refused.json()["message"]
    # A long display name is cut to fit: the person signs in.
    me = bearer(sub="long-name", email="named@example.com", name="N" * 1000)
    assert me.status_code == 200, me.text
    assert me.json()["subject"] == "named@example.com"

    async def stored_name() -> str:
        return (await User.get(subject="long-name")).name

    assert live.run(stored_name()) == "N" * 200


def test_asyncpgs_pool_retry_is_logged_on_one_line_without_a_traceback():
    """asyncpg logs a traceback each time its pool fails to reconnect (PostgreSQL down): orc's
    log set-up keeps the line and the error, not the traceback."""
    record = logging.LogRecord(
        "asyncpg.pool", logging.WARNING, __file__, 1, "retrying %s", ("x",), None
    )
    try:
        raise ConnectionRefusedError(111, "Connect call failed")
    except ConnectionRefusedError:
        record.exc_info = sys.exc_info()
    assert ExceptionOnOneLine().filter(record)
    line = JsonFormatter().format(record)
    assert "exception" not in json.loads(line)
    assert (
        json.loads(line)["message"]
        == "retrying x: ConnectionRefusedError: [Errno 111] Connect call failed"
    )
    assert "\n" not in line
