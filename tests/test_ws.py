"""The live WebSocket /api/ws with a real client (the `websockets` package) against `orc serve`.

Events written by any process (the API, the CLI, another server on the same PostgreSQL) reach
subscribed clients; a reconnect with ``since`` catches up; slow clients are cut off, not waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from orc.api import event_routes as events_api
from orc.api.event_routes import CLOSE_TOO_SLOW, SEND_TIMEOUT_SECONDS
from orc.outbox.live import QUEUE_LIMIT, Hub, Subscriber
from tests.support import OrcServer, base_env, descendants, run_orc

JSON = dict[str, Any]
# How long a live event may take to reach a subscribed client: orc keeps it under one second.
LIVE_DEADLINE = 1.0


def ws_url(server: OrcServer, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/api/ws" + (f"?{query}" if query else "")


async def receive(ws: ClientConnection, timeout: float = 5.0) -> JSON:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def receive_until(
    ws: ClientConnection, done: Callable[[JSON], bool], timeout: float = 5.0
) -> list[JSON]:
    """Messages up to and including the first for which ``done`` is true."""
    deadline = time.monotonic() + timeout
    messages = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching message within {timeout}s; got {messages}")
        try:
            message = await receive(ws, remaining)
        except TimeoutError:
            raise AssertionError(f"no matching message within {timeout}s; got {messages}") from None
        messages.append(message)
        if done(message):
            return messages


async def subscribe(ws: ClientConnection, task_id: str = "*", **extra: Any) -> JSON:
    await ws.send(json.dumps({"type": "subscribe", "task_id": task_id, **extra}))
    subscribed = await receive(ws)
    assert subscribed["type"] == "subscribed", subscribed
    assert subscribed["task_id"] == task_id
    return subscribed


async def assert_quiet(ws: ClientConnection) -> None:
    """Nothing is pending for this client: a ping is answered by the very next message."""
    await ws.send(json.dumps({"type": "ping"}))
    assert await receive(ws) == {"type": "pong"}


def is_event(event_type: str, task_id: str | None = None) -> Callable[[JSON], bool]:
    def match(message: JSON) -> bool:
        return (
            message["type"] == "event"
            and message["event_type"] == event_type
            and (task_id is None or message["task_id"] == task_id)
        )

    return match


def event_ids(messages: list[JSON]) -> list[int]:
    return [m["id"] for m in messages if m["type"] == "event"]


class Http:
    """Async HTTP calls to one server (so the event loop keeps serving the WebSocket clients)."""

    def __init__(self, server: OrcServer) -> None:
        self.client = httpx.AsyncClient(base_url=server.base_url, timeout=15)

    async def call(self, method: str, path: str, status: int, **kwargs: Any) -> Any:
        response = await self.client.request(method, path, **kwargs)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    async def create(self, title: str) -> str:
        return (await self.call("POST", "/api/tasks", 201, json={"title": title}))["id"]

    async def patch(self, task_id: str, **changes: Any) -> JSON:
        return await self.call("PATCH", f"/api/tasks/{task_id}", 200, json=changes)

    async def act(self, task_id: str, action: str) -> JSON:
        status = 202 if action in ("run", "resume") else 200
        return await self.call("POST", f"/api/tasks/{task_id}/{action}", status)

    async def usage(self, task_id: str, **event: Any) -> JSON:
        return await self.call("POST", f"/api/tasks/{task_id}/usage", 201, json=event)

    async def events(self, since: int = 0) -> list[JSON]:
        found: list[JSON] = []
        while True:
            page = await self.call("GET", "/api/events", 200, params={"since": since})
            found += page["events"]
            since = page["last_id"]
            if not page["more"]:
                return found

    async def close(self) -> None:
        await self.client.aclose()


@contextlib.asynccontextmanager
async def http_to(server: OrcServer):
    http = Http(server)
    try:
        # A project, so that tasks made from here on belong to it and can be run.
        repo = git_repo(Path(server.env["HOME"]) / "repo")
        await http.client.post("/api/projects", json={"path": str(repo)})
        yield http
    finally:
        await http.close()


def git_repo(path: Path) -> Path:
    if not (path / ".git").exists():
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


# --- subscribing, and events from another process ----------------------------------------------


async def test_orc_new_in_another_process_reaches_a_star_subscriber_within_a_second(
    server_factory, migrated, orc_env
):
    repo = git_repo(Path(orc_env["HOME"]) / "repo")
    assert run_orc(["project", "add", str(repo)], orc_env).returncode == 0
    server = server_factory(orc_env, "--no-worker").start()
    async with connect(ws_url(server)) as ws:
        subscribed = await subscribe(ws, "*")
        assert subscribed["last_id"] == 0
        assert await receive(ws) == {
            "type": "session_update",
            "running_tasks": 0,
            "queued_tasks": 0,
            "tokens_today": 0,
            "cost_today_usd": 0,
        }

        made = await asyncio.to_thread(
            run_orc, ["new", "made by the CLI", "--weight", "small"], orc_env
        )
        assert made.returncode == 0, made.stderr
        assert "TASK-001 created" in made.stdout
        # Within 1 s of the CLI exiting (it may well have arrived before).
        event = await receive(ws, timeout=LIVE_DEADLINE)
        assert event["type"] == "event"
        assert (event["event_type"], event["task_id"]) == ("task_created", "TASK-001")
        assert event["id"] > subscribed["last_id"]
        assert event["data"]["title"] == "made by the CLI"
        assert event["data"]["weight"] == "small"
        update = await receive(ws)
        assert update["type"] == "session_update" and update["running_tasks"] == 0

        # Changes through the API arrive too, with their data.
        async with http_to(server) as http:
            await http.act("TASK-001", "run")
            state = await receive_until(ws, is_event("state"), timeout=LIVE_DEADLINE)
            assert state[-1]["data"] == {"from": "created", "to": "queued", "action": "run"}
            await http.usage("TASK-001", model="claude-sonnet-4-5", input_tokens=1_000_000)
            tokens = await receive_until(ws, is_event("tokens"), timeout=LIVE_DEADLINE)
            assert tokens[-1]["data"]["tokens"]["input"] == 1_000_000
        await assert_quiet_or_session_updates(ws)


async def assert_quiet_or_session_updates(ws: ClientConnection) -> list[JSON]:
    """After the last change only session updates may still be on their way; then a pong.
    Returns those session updates."""
    await ws.send(json.dumps({"type": "ping"}))
    messages = await receive_until(ws, lambda m: m["type"] == "pong")
    assert all(m["type"] == "session_update" for m in messages[:-1]), messages
    return messages[:-1]


async def test_a_task_subscription_gets_only_that_tasks_events(server_factory, migrated, orc_env):
    server = server_factory(orc_env, "--no-worker").start()
    async with (
        http_to(server) as http,
        connect(ws_url(server)) as ws,
        connect(ws_url(server)) as watcher,
    ):
        await subscribe(watcher, "*")
        mine, other = await http.create("mine"), await http.create("other")
        # Once this process has delivered both creations, subscribe to one task.
        await receive_until(watcher, is_event("task_created", other))
        subscribed = await subscribe(ws, mine)
        assert subscribed["last_id"] == 2
        await assert_quiet(ws)  # no session_update for a single-task subscription

        await http.patch(other, title="other renamed")
        await http.act(other, "run")
        await http.patch(mine, title="mine renamed")
        await http.usage(other, model="m", input_tokens=1)
        await http.act(mine, "run")
        messages = await receive_until(ws, is_event("state", mine), timeout=LIVE_DEADLINE)
        assert [(m["event_type"], m["task_id"]) for m in messages] == [
            ("task_updated", mine),
            ("state", mine),
        ]
        await assert_quiet(ws)

        # After unsubscribing nothing more arrives.
        await ws.send(json.dumps({"type": "unsubscribe"}))
        assert await receive(ws) == {"type": "unsubscribed"}
        await http.act(mine, "pause")
        await receive_until(watcher, is_event("state", mine), timeout=LIVE_DEADLINE)
        await assert_quiet(ws)

        # Subscribing again (to another task) works on the same connection.
        await subscribe(ws, other)
        await http.act(other, "complete")
        (completed,) = await receive_until(ws, is_event("state", other), timeout=LIVE_DEADLINE)
        assert completed["data"]["to"] == "completed"
        await assert_quiet(ws)

        # Another spelling of the id (TASK-2 for TASK-002) means the same task.
        alias = "TASK-" + other.removeprefix("TASK-").lstrip("0")
        assert alias != other
        await ws.send(json.dumps({"type": "subscribe", "task_id": alias}))
        reply = await receive(ws)
        assert (reply["type"], reply["task_id"]) == ("subscribed", other)
        await http.patch(other, title="by alias")
        (renamed,) = await receive_until(ws, is_event("task_updated", other), timeout=LIVE_DEADLINE)
        assert renamed["data"]["title"] == "by alias"
        await assert_quiet(ws)


async def test_malformed_messages_get_an_error_and_the_connection_stays_usable(
    server_factory, migrated, sqlite_env
):
    server = server_factory(sqlite_env, "--no-worker").start()
    async with http_to(server) as http, connect(ws_url(server)) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert await receive(ws) == {"type": "pong"}
        for bad in (
            "not json",
            "",
            "[1, 2]",
            "42",
            json.dumps({"no": "type"}),
            json.dumps({"type": "dance"}),
            json.dumps({"type": "subscribe", "task_id": "nope"}),
            json.dumps({"type": "subscribe", "task_id": 7}),
            json.dumps({"type": "subscribe", "task_id": "*", "since": "x"}),
            json.dumps({"type": "subscribe", "task_id": "*", "since": -1}),
            json.dumps({"type": "subscribe", "task_id": "*", "since": True}),
            b"\x00\x01 binary",
        ):
            await ws.send(bad)
            error = await receive(ws)
            assert error["type"] == "error", (bad, error)
            assert error["error"] == "bad_request"
            assert isinstance(error["message"], str) and error["message"]
            await assert_quiet(ws)
        # Still usable: a subscription after all that delivers events.
        await subscribe(ws, "*")
        await receive(ws)  # session_update
        task_id = await http.create("after the errors")
        messages = await receive_until(ws, is_event("task_created", task_id))
        assert messages[-1]["data"]["title"] == "after the errors"


# --- catching up after a reconnect --------------------------------------------------------------


async def test_reconnecting_with_since_receives_exactly_the_missed_events(
    server_factory, migrated, orc_env
):
    server = server_factory(orc_env, "--no-worker").start()
    async with http_to(server) as http, connect(ws_url(server)) as watcher:
        await subscribe(watcher, "*")

        async def delivered(event_id: int) -> None:
            """Wait until this server has sent event_id live (its tailer is past it)."""
            await receive_until(watcher, lambda m: m.get("id") == event_id)

        async with connect(ws_url(server)) as ws:
            await subscribe(ws, "*")
            await receive(ws)  # session_update
            first = await http.create("first")
            second = await http.create("second")
            seen = await receive_until(ws, is_event("task_created", second))
        last_seen = event_ids(seen)[-1]
        assert event_ids(seen) == [e["id"] for e in await http.events()]

        # Changes while disconnected.
        await http.act(first, "run")
        await http.patch(second, current_phase="plan")
        await http.usage(first, model="claude-haiku-4-5", output_tokens=10)
        await run_in_cli(orc_env, "missed by the CLI")
        missed = await http.events(since=last_seen)
        assert len(missed) == 5
        await delivered(missed[-1]["id"])

        async with connect(ws_url(server, f"since={last_seen}")) as ws:
            await subscribe(ws, "*")
            # Live changes while the backlog is being sent.
            await http.act(first, "pause")
            await http.patch(second, title="live")
            everything = await http.events(since=last_seen)
            assert len(everything) == 7
            messages = await receive_until(ws, lambda m: m.get("id") == everything[-1]["id"])
            # The catch-up ends with a session update. When the catch-up already held the live
            # changes, it comes after the last event: count it too.
            messages += await assert_quiet_or_session_updates(ws)
        received = [m for m in messages if m["type"] == "event"]
        assert received == everything  # the missed ones, then the live ones: in order, once
        assert received[:5] == missed
        assert sum(m["type"] == "session_update" for m in messages) >= 1
        last_seen = received[-1]["id"]

        # The same with `since` in the subscribe message, and for a single task.
        await http.act(first, "resume")
        await http.usage(second, model="m", input_tokens=1)
        await http.act(first, "complete")
        missed = await http.events(since=last_seen)
        await delivered(missed[-1]["id"])
        async with connect(ws_url(server)) as ws:
            await subscribe(ws, "*", since=last_seen)
            messages = await receive_until(ws, lambda m: m.get("id") == missed[-1]["id"])
            assert [m for m in messages if m["type"] == "event"] == missed
            await assert_quiet_or_session_updates(ws)
        async with connect(ws_url(server, f"since={last_seen}")) as ws:
            await subscribe(ws, first)
            only_first = [e for e in missed if e["task_id"] == first]
            assert [e["event_type"] for e in only_first] == ["state", "state"]
            messages = await receive_until(ws, lambda m: m.get("id") == only_first[-1]["id"])
            assert messages == only_first
            await assert_quiet(ws)
        # A position at the newest event: nothing to catch up.
        async with connect(ws_url(server)) as ws:
            await subscribe(ws, "*", since=missed[-1]["id"])
            assert (await receive(ws))["type"] == "session_update"
            # No event is replayed; a session update the tailer deferred (at most one a second)
            # after the changes above may still arrive on this firehose subscription.
            await assert_quiet_or_session_updates(ws)


async def run_in_cli(env: dict[str, str], title: str) -> None:
    made = await asyncio.to_thread(run_orc, ["new", title], env)
    assert made.returncode == 0, made.stderr


# --- two servers on one PostgreSQL --------------------------------------------------------------


def _env_in(tmp_path: Path, name: str, database_url: str) -> dict[str, str]:
    directory = tmp_path / name
    directory.mkdir()
    env = base_env(directory)
    env["DATABASE_URL"] = database_url
    return env


async def test_a_change_through_one_server_reaches_a_client_of_another_within_a_second(
    server_factory, postgres_database, tmp_path
):
    server_a = server_factory(_env_in(tmp_path, "a", postgres_database), "--no-worker").start()
    server_b = server_factory(_env_in(tmp_path, "b", postgres_database), "--no-worker").start()
    assert server_a.env["ORC_HOME"] != server_b.env["ORC_HOME"]
    async with (
        http_to(server_a) as http_a,
        http_to(server_b) as http_b,
        connect(ws_url(server_a)) as ws_a,
        connect(ws_url(server_b)) as ws_b,
    ):
        for ws in (ws_a, ws_b):
            await subscribe(ws, "*")
            await receive(ws)  # session_update
        for round_ in range(3):
            # A -> client of B
            task_id = await http_a.create(f"made on A {round_}")
            sent = time.monotonic()
            messages = await receive_until(
                ws_b, is_event("task_created", task_id), timeout=LIVE_DEADLINE
            )
            assert time.monotonic() - sent < LIVE_DEADLINE
            assert messages[-1]["data"]["title"] == f"made on A {round_}"
            # B -> client of A
            await http_b.act(task_id, "run")
            sent = time.monotonic()
            await receive_until(ws_a, is_event("state", task_id), timeout=LIVE_DEADLINE)
            assert time.monotonic() - sent < LIVE_DEADLINE
            await asyncio.sleep(0.3)  # let the PostgreSQL safety poll drift out of phase
        # Both clients saw the same events, in the same order, with the same ids.
        everything = await http_a.events()
        assert everything == await http_b.events()


# --- slow clients -------------------------------------------------------------------------------

BIG = 300  # events of ~20 kB: more than the kernel buffers of one stalled connection hold
SMALL = QUEUE_LIMIT + 300  # then more events than a subscriber's queue holds


async def produce_outbox_events(database_url: str) -> list[int]:
    """Write events into the outbox as another orc process (the CLI, the worker) would.

    In transactions of 20 with short pauses, at roughly the pace of a busy API, so that a
    client that reads keeps up.
    """
    from tortoise.backends.base.executor import EXECUTOR_CACHE

    from orc.db import close_database, open_database
    from orc.outbox.events import change_transaction, emit

    EXECUTOR_CACHE.clear()  # Tortoise caches insert SQL per connection name, not per dialect
    await open_database(database_url)
    ids = []
    try:
        for start in range(0, BIG + SMALL, 20):
            async with change_transaction() as conn:
                for n in range(start, min(start + 20, BIG + SMALL)):
                    data = {"n": n, "padding": "x" * 20_000} if n < BIG else {"n": n}
                    ids.append((await emit(conn, "tokens", "TASK-001", data)).id)
            await asyncio.sleep(0.01)
    finally:
        await close_database()
    return ids


def sqlite_url(env: dict[str, str]) -> str:
    """The database of an `sqlite_env` server (the default: ORC_HOME/orc.db)."""
    return f"sqlite://{Path(env['ORC_HOME']) / 'orc.db'}"


def stalled_socket(server: OrcServer) -> socket.socket:
    """A connected TCP socket with a tiny receive buffer, for a client that will not read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    return sock


async def read_all(ws: ClientConnection, into: list[JSON]) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for raw in ws:
            into.append(json.loads(raw))


async def test_a_slow_client_does_not_hold_up_others_and_is_closed_with_1013(
    server_factory, migrated, sqlite_env
):
    server = server_factory(sqlite_env, "--no-worker").start()
    async with (
        connect(
            ws_url(server), sock=stalled_socket(server), max_queue=1, close_timeout=0.1
        ) as slow,
        connect(ws_url(server), max_size=None) as fast,
    ):
        for ws in (slow, fast):
            await subscribe(ws, "*")
            await receive(ws)  # session_update
        received: list[JSON] = []
        reader = asyncio.create_task(read_all(fast, received))
        # `slow` reads nothing from here on.
        ids = await produce_outbox_events(sqlite_url(sqlite_env))
        produced = time.monotonic()

        # The reading client gets every event, promptly, while the slow one is stuck.
        while len(event_ids(received)) < len(ids) and time.monotonic() - produced < 5:
            await asyncio.sleep(0.02)
        assert event_ids(received) == ids
        assert time.monotonic() - produced < 2.0
        assert fast.state.name == "OPEN"

        # The slow client finds a prefix of the events, then a 1013 close, once it reads again.
        got: list[JSON] = []
        await asyncio.wait_for(read_all(slow, got), SEND_TIMEOUT_SECONDS + 5)
        assert slow.close_code == CLOSE_TOO_SLOW, (slow.close_code, slow.close_reason)
        assert "since" in slow.close_reason
        slow_ids = event_ids(got)
        assert 0 < len(slow_ids) < len(ids)
        assert slow_ids == ids[: len(slow_ids)]
        reader.cancel()


def _server_side_peers(server: OrcServer) -> set[int]:
    """Client ports of the established connections to the server's port."""
    peers = set()
    for proc in [psutil.Process(server.pid), *descendants(server.pid)]:
        with contextlib.suppress(psutil.Error):
            for conn in proc.net_connections(kind="tcp"):
                if conn.laddr and conn.laddr.port == server.port and conn.status == "ESTABLISHED":
                    peers.add(conn.raddr.port)
    return peers


async def test_a_client_that_stops_reading_is_disconnected_by_the_server(
    server_factory, migrated, sqlite_env
):
    """Regression (found by this suite): orc/api/event_routes.py websocket(): after the queue
    overflows, `await ws.close(1013)` waits for Sanic's conn_mutex and then for the socket to
    become writable, without a timeout; a client that stopped reading is never disconnected, and
    its handler, queue and buffers stay until the peer goes away.
    """
    server = server_factory(sqlite_env, "--no-worker").start()
    sock = stalled_socket(server)
    port = sock.getsockname()[1]
    # No client-side keepalive: only the server may end this connection.
    async with connect(
        ws_url(server), sock=sock, max_queue=1, ping_interval=None, close_timeout=0.1
    ) as stalled:
        await subscribe(stalled, "*")
        await receive(stalled)  # session_update
        assert port in _server_side_peers(server)
        await produce_outbox_events(sqlite_url(sqlite_env))
        deadline = time.monotonic() + SEND_TIMEOUT_SECONDS + 5
        while port in _server_side_peers(server) and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
        assert port not in _server_side_peers(server), "the stalled client is still connected"


# --- races and throttling (deterministic, in process) -------------------------------------------


@pytest.fixture
async def local_outbox(tmp_path) -> Any:
    """An SQLite store open in this process, with TASK-001 and its events 1 to 4."""
    from tortoise.backends.base.executor import EXECUTOR_CACHE

    from orc.db import close_database, open_database
    from orc.db.schema import migrate_database
    from orc.tasks.lifecycle import create_task, update_task

    EXECUTOR_CACHE.clear()  # Tortoise caches insert SQL per connection name, not per dialect
    url = f"sqlite://{tmp_path / 'orc.db'}"
    await migrate_database(url)
    await open_database(url)
    try:
        await create_task("watched")  # event 1
        for n in range(3):
            await update_task(1, {"title": f"title {n}"})  # events 2, 3, 4
        yield
    finally:
        await close_database()
        EXECUTOR_CACHE.clear()


async def subscribe_while_the_tailer_delivers(
    monkeypatch, request: JSON, deliver: Callable[[Hub], Any]
) -> list[JSON]:
    """Run the handler's subscribe step while the outbox tailer publishes to the hub
    (``deliver``) during the step's first database await, then pump the subscriber's queue
    into a recording socket; return what is sent."""
    subscriber = Subscriber()
    hub = Hub()
    hub.subscribers.add(subscriber)
    real_latest_event_id = events_api.latest_event_id

    async def latest_event_id_meanwhile() -> int:
        await deliver(hub)
        return await real_latest_event_id()

    monkeypatch.setattr(events_api, "latest_event_id", latest_event_id_meanwhile)
    await events_api._handle(None, subscriber, json.dumps(request), None)

    sent: list[JSON] = []

    class RecordingSocket:
        async def send(self, text: str) -> None:
            sent.append(json.loads(text))

    pump = asyncio.create_task(events_api._pump(RecordingSocket(), subscriber))
    for _ in range(100):
        await asyncio.sleep(0)
    pump.cancel()
    return sent


async def test_a_live_event_during_subscribe_does_not_swallow_the_catch_up(
    local_outbox, monkeypatch
):
    """Regression (found by this suite): orc/api/event_routes.py _handle(): the topic is set before
    the catch-up starts holding live events; a live event delivered while
    latest_event_id()/oldest_event_id() run is queued before the backlog, and _pump then drops
    the whole backlog as duplicates.
    """
    from orc.outbox.events import event_message, events_since
    from orc.tasks.lifecycle import update_task

    async def a_new_event(hub: Hub) -> None:
        await update_task(1, {"title": "live"})  # event 5
        for event in await events_since(4, 10):
            hub.publish(event_message(event))  # as OutboxTailer.deliver_new does

    sent = await subscribe_while_the_tailer_delivers(
        monkeypatch, {"type": "subscribe", "task_id": "TASK-001", "since": 1}, a_new_event
    )
    assert event_ids(sent) == [2, 3, 4, 5]
    assert sent[0]["type"] == "subscribed"


async def test_a_subscription_without_since_starts_with_subscribed_and_only_newer_events(
    local_outbox, monkeypatch
):
    """Regression (found by this suite): event_routes._handle() (orc/api): without `since`, an event
    older than the subscription that the tailer publishes during the subscribe step is sent
    before the 'subscribed' reply, although its id is <= the last_id that reply announces.
    """
    from orc.outbox.events import event_message, events_since

    async def an_old_event(hub: Hub) -> None:
        # Event 4 was written before the subscription; the tailer is only now publishing it.
        for event in await events_since(3, 10):
            hub.publish(event_message(event))

    sent = await subscribe_while_the_tailer_delivers(
        monkeypatch, {"type": "subscribe", "task_id": "TASK-001"}, an_old_event
    )
    assert sent[0]["type"] == "subscribed", sent
    assert sent[0]["last_id"] == 4
    assert all(m["id"] > 4 for m in sent if m["type"] == "event"), sent


async def test_the_last_session_update_after_a_burst_shows_the_final_state(
    server_factory, migrated, sqlite_env
):
    """Regression (found by this suite): orc/outbox/live.py OutboxTailer._publish_session_update:
    updates within 1 s of the previous one are dropped, not deferred, so after a burst of
    changes the last session_update a '*' client got is stale (here: queued_tasks 0 while a
    task waits for a worker) until some later event.
    """
    server = server_factory(sqlite_env, "--no-worker").start()
    async with http_to(server) as http, connect(ws_url(server)) as ws:
        await subscribe(ws, "*")
        assert (await receive(ws))["running_tasks"] == 0
        task_id = await http.create("burst")
        await receive_until(ws, lambda m: m["type"] == "session_update")
        await http.act(task_id, "run")  # well within a second of the previous update
        messages = await receive_until(
            ws,
            lambda m: m["type"] == "session_update" and m["queued_tasks"] == 1,
            timeout=2.5,
        )
        assert messages[-1]["queued_tasks"] == 1


async def test_on_sqlite_a_write_by_another_process_wakes_the_tailer_not_its_poll(
    local_outbox, tmp_path, monkeypatch
):
    """On SQLite the tailer is woken by the write itself (inotify on the database's directory):
    with its poll an hour away, an event written by the CLI still reaches a subscriber."""
    from orc.db.url import DatabaseUrl
    from orc.outbox import live

    monkeypatch.setattr(live, "SQLITE_POLL_SECONDS", 3600.0)
    monkeypatch.setattr(live, "SAFETY_POLL_SECONDS", 3600.0)
    hub, subscriber = Hub(), Subscriber()
    subscriber.topic = "*"
    hub.subscribers.add(subscriber)
    url = f"sqlite://{tmp_path / 'orc.db'}"

    async def session_update() -> JSON:
        return {"type": "session_update"}

    waiting = asyncio.Event()
    real_wait = live.OutboxTailer._wait

    async def wait(self: live.OutboxTailer) -> None:
        waiting.set()  # it has delivered what there was and now waits for news
        await real_wait(self)

    monkeypatch.setattr(live.OutboxTailer, "_wait", wait)
    tailer = live.OutboxTailer(hub, DatabaseUrl.of(url), session_update)
    tail = asyncio.create_task(tailer.run())
    try:
        await asyncio.wait_for(waiting.wait(), 30)
        env = {**base_env(tmp_path), "DATABASE_URL": url}
        made = await asyncio.to_thread(run_orc, ["new", "made by the CLI"], env)
        assert made.returncode == 0, made.stderr
        message = json.loads((await asyncio.wait_for(subscriber.queue.get(), 60)).text)
        assert (message["event_type"], message["data"]["title"]) == (
            "task_created",
            "made by the CLI",
        )
    finally:
        tail.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tail
        await tailer.close()


async def test_an_event_written_straight_to_the_socket_never_overtakes_one_still_being_sent():
    """The hub writes an event straight to an idle client's socket (one pass over every client,
    as websockets.broadcast does) and queues it behind whatever the client's pump is still
    sending: the client sees every message once, in order."""
    from orc.outbox.live import encode

    def event(n: int) -> JSON:
        return {"type": "event", "id": n, "event_type": "state", "task_id": "TASK-001"}

    wire: list[JSON] = []  # what reached the socket, in order, either way
    release = asyncio.Event()

    class SlowSocket:
        async def send(self, text: str) -> None:
            await release.wait()
            wire.append(json.loads(text))

    def write_now(message: Any) -> bool:
        wire.append(json.loads(message.data))
        return True

    hub, subscriber = Hub(), Subscriber()
    subscriber.topic = "*"
    subscriber.write_now = write_now
    hub.subscribers.add(subscriber)
    pump = asyncio.create_task(events_api._pump(SlowSocket(), subscriber))
    try:
        hub.publish(event(1))  # nothing in flight: straight to the socket
        await subscriber.queue.put(encode({"type": "pong"}))  # a reply, through the pump
        while not subscriber.sending:
            await asyncio.sleep(0)
        hub.publish(event(2))  # the pong is still being sent: event 2 waits behind it
        hub.publish(event(1))  # the catch-up and the tail overlap: sent once
        release.set()
        while not subscriber.queue.empty() or subscriber.sending:
            await asyncio.sleep(0)
        hub.publish(event(3))  # idle again: straight to the socket
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
    assert [m.get("id", m["type"]) for m in wire] == [1, "pong", 2, 3]
