"""Events: catch-up over HTTP (``/api/events?since=ID``) and the live WebSocket ``/api/ws``.

WebSocket protocol (JSON text frames):
    client: {"type": "subscribe", "task_id": "TASK-001" | "*", "since": ID?}
            {"type": "unsubscribe"}   {"type": "ping"}
    server: {"type": "subscribed", "task_id": …, "last_id": …}   {"type": "unsubscribed"}
            {"type": "event", "id": …, "event_type": …, "task_id": …, "data": …}
            {"type": "session_update", …}   {"type": "pong"}
            {"type": "error", "error": code, "message": …}
A client that reconnects with ``?since=ID`` (or ``since`` in its subscribe message) first gets
every event it missed, then live ones, in id order and without duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from sanic import Request, Sanic
from sanic.response import HTTPResponse
from sanic.response import json as json_response
from websockets.exceptions import ConnectionClosed, InvalidState
from websockets.protocol import State

from orc.api.blueprint import JsonBlueprint
from orc.api.json_body import parse_json
from orc.api.route_roles import identity_of
from orc.api.schemas import MAX_EVENT_ID, query_int
from orc.db.models import Task
from orc.errors import ApiError
from orc.outbox.events import event_message, events_since, latest_event_id, oldest_event_id
from orc.outbox.live import ALL, BATCH, Hub, OutboxTailer, Outgoing, Subscriber, encode
from orc.tasks.lifecycle import canonical_task_id
from orc.usage.cost import usage_today

bp = JsonBlueprint("events")
MAX_EVENTS_PAGE = 1000
SEND_TIMEOUT_SECONDS = 10.0
# 1013 "try again later": the client was too slow; reconnect with since=<last id seen>.
CLOSE_TOO_SLOW = 1013
# 4000-4999 are for applications; 4401 mirrors HTTP 401.
CLOSE_REVOKED = 4401
# 1008 "policy violation": the connection's own query was bad (the error frame says how).
CLOSE_BAD_REQUEST = 1008
CLOSE_TIMEOUT_SECONDS = 2.0


@bp.get("/api/events")
async def events_index(request: Request) -> HTTPResponse:
    """Events after ``since`` (oldest first), up to ``limit``; for catching up."""
    since = query_int(request, "since", 0, 0, MAX_EVENT_ID)
    limit = query_int(request, "limit", 100, 1, MAX_EVENTS_PAGE)
    task_id = request.args.get("task_id")
    if task_id is not None:
        task_id = canonical_task_id(task_id)
        if task_id is None:
            raise ApiError(400, "bad_query", "task_id must look like TASK-001")
    events = await events_since(since, limit, task_id)
    oldest = await oldest_event_id()
    return json_response(
        {
            "events": [event_message(e) for e in events],
            "last_id": events[-1].id if events else since,
            "more": len(events) == limit,
            # Events before oldest_id were pruned; a client behind it must reload.
            "oldest_id": oldest,
            "truncated": oldest is not None and since + 1 < oldest,
        }
    )


async def session_update(app: Sanic) -> dict[str, Any]:
    """Running and queued tasks, and today's tokens and estimated cost."""
    by_model, running = await usage_today()
    queued = await Task.filter(status="queued").count()
    prices = app.ctx.prices
    return {
        "type": "session_update",
        "running_tasks": running,
        "queued_tasks": queued,
        "tokens_today": sum(sum(s.tokens.values()) for s in by_model.values()),
        "cost_today_usd": round(sum(s.cost(m, prices) for m, s in by_model.items()), 6),
    }


async def start_tailer(app: Sanic) -> None:
    app.ctx.hub = Hub()
    app.ctx.tailer = OutboxTailer(
        app.ctx.hub, app.ctx.settings.database, lambda: session_update(app)
    )
    app.ctx.tailer_task = asyncio.create_task(app.ctx.tailer.run())


async def stop_tailer(app: Sanic) -> None:
    app.ctx.tailer_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await app.ctx.tailer_task
    await app.ctx.tailer.close()


async def _pump(ws: Any, subscriber: Subscriber) -> None:
    """Send queued messages in order, skipping events already sent."""
    while True:
        message = await subscriber.queue.get()
        if subscriber.already_sent(message):
            continue
        subscriber.mark_sent(message)
        subscriber.sending = True
        try:
            async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                await ws.send(message.text)
        finally:
            subscriber.sending = False


def _direct_writer(ws: Any) -> Callable[[Outgoing], bool] | None:
    """A function that writes a text frame to ``ws`` without awaiting, when that is safe.

    What ``websockets.broadcast`` does for its own connections, on Sanic's: the frame goes
    through the connection's protocol object and straight to the transport. It declines
    (the message then waits in the queue, and the pump sends it with backpressure) while
    Sanic is writing to the connection (a send, ping or close holds its mutex), when the
    connection is not open, or when the transport already buffers unsent bytes: a client
    that does not read is not written to without limit.
    """
    protocol = getattr(ws, "ws_proto", None)
    io_proto = getattr(ws, "io_proto", None)
    mutex = getattr(ws, "conn_mutex", None)
    if protocol is None or io_proto is None or mutex is None:
        return None

    def write(message: Outgoing) -> bool:
        transport = io_proto.transport
        if (
            mutex.locked()
            or protocol.state is not State.OPEN
            or transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size()
        ):
            return False
        try:
            protocol.send_text(message.data)
            for chunk in protocol.data_to_send():
                transport.write(chunk)
        except (OSError, RuntimeError, InvalidState):
            return False  # the pump's next send sees the broken connection and ends it
        return True

    return write


async def _catch_up(subscriber: Subscriber, since: int, topic: str) -> None:
    """Queue every stored event after ``since``, then the live ones held meanwhile (newer only).

    The caller has set ``subscriber.held`` before it read anything, so no live event is lost.
    """
    start = since
    try:
        task_id = None if topic == ALL else topic
        while True:
            events = await events_since(since, BATCH, task_id)
            for event in events:
                await subscriber.queue.put(encode(event_message(event)))
                since = event.id
            if len(events) < BATCH:
                break
    finally:
        held, subscriber.held = subscriber.held or [], None
    for message in held:
        if message.event_id is None or message.event_id > start:
            subscriber.offer(message)


async def _reply(subscriber: Subscriber, message: dict[str, Any]) -> None:
    await subscriber.queue.put(encode(message))


async def _refuse(subscriber: Subscriber, text: str) -> None:
    await _reply(subscriber, {"type": "error", "error": "bad_request", "message": text})


def _valid_since(value: object) -> bool:
    if value is None:
        return True
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_EVENT_ID


async def _handle(
    request: Request, subscriber: Subscriber, raw: str | bytes, since: int | None
) -> int | None:
    """React to one client message; return the catch-up position still to use."""
    try:
        message = parse_json(raw)
    except ApiError as exc:
        await _refuse(subscriber, exc.message)
        return since
    kind = message.get("type") if isinstance(message, dict) else None
    if kind == "ping":
        await _reply(subscriber, {"type": "pong"})
        return since
    if kind == "unsubscribe":
        subscriber.topic = None
        await _reply(subscriber, {"type": "unsubscribed"})
        return since
    if kind != "subscribe" or not isinstance(message, dict):
        await _refuse(subscriber, "send JSON with type subscribe, unsubscribe or ping")
        return since
    topic = message.get("task_id", ALL)
    requested_since = message.get("since", since)
    if isinstance(topic, str) and topic != ALL:
        topic = canonical_task_id(topic)
    if not isinstance(topic, str):
        await _refuse(subscriber, "task_id must be TASK-001 or *")
        return since
    if not _valid_since(requested_since):
        await _refuse(subscriber, "since must be an event id")
        return since
    # Hold live events from here on, so nothing the tailer delivers during the queries below
    # can overtake the "subscribed" reply or the backlog.
    subscriber.held = []
    subscriber.topic = topic
    last_id = await latest_event_id()
    await _reply(
        subscriber,
        {
            "type": "subscribed",
            "task_id": topic,
            "last_id": last_id,
            "oldest_id": await oldest_event_id(),
        },
    )
    await _catch_up(subscriber, last_id if requested_since is None else requested_since, topic)
    if topic == ALL:
        await _reply(subscriber, await session_update(request.app))
    return None


async def _close_slow_client(ws: Any) -> None:
    """Close with 1013; a peer that reads nothing cannot take the close frame, so then abort."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await ws.close(CLOSE_TOO_SLOW, "too slow; reconnect with since=<last id>")
    except (TimeoutError, ConnectionClosed):
        transport = getattr(getattr(ws, "io_proto", None), "transport", None)
        if transport is not None:
            transport.abort()


async def _close_bad_request(ws: Any, error: ApiError) -> None:
    message = {"type": "error", "error": error.code, "message": error.message}
    with contextlib.suppress(TimeoutError, ConnectionClosed):
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await ws.send(encode(message).text)
            await ws.close(CLOSE_BAD_REQUEST, error.message[:120])


async def _close_revoked(ws: Any) -> None:
    with contextlib.suppress(TimeoutError, ConnectionClosed):
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await ws.close(CLOSE_REVOKED, "signed out: the session or token was revoked")


@bp.websocket("/api/ws")
async def websocket(request: Request, ws: Any) -> None:
    """Live events; see the module docstring for the protocol."""
    try:
        since = (
            query_int(request, "since", -1, 0, MAX_EVENT_ID) if "since" in request.args else None
        )
    except ApiError as exc:
        await _close_bad_request(ws, exc)
        return
    subscriber = Subscriber(revocation_key=identity_of(request).revocation_key)
    subscriber.write_now = _direct_writer(ws)
    hub: Hub = request.app.ctx.hub
    hub.subscribers.add(subscriber)
    pump = asyncio.create_task(_pump(ws, subscriber))
    overflow = asyncio.create_task(subscriber.overflowed.wait())
    revoked = asyncio.create_task(subscriber.revoked.wait())
    try:
        while True:
            receive = asyncio.create_task(ws.recv())
            done, _ = await asyncio.wait(
                {receive, pump, overflow, revoked}, return_when=asyncio.FIRST_COMPLETED
            )
            if receive not in done:
                receive.cancel()
                break
            raw = receive.result()
            if raw is None:
                break
            since = await _handle(request, subscriber, raw, since)
        if overflow.done():
            await _close_slow_client(ws)
        elif revoked.done():
            await _close_revoked(ws)
    except (ConnectionClosed, asyncio.CancelledError, TimeoutError):
        pass
    finally:
        hub.subscribers.discard(subscriber)
        for task in (pump, overflow, revoked):
            task.cancel()
        # Collect what they raised (a send that timed out or hit a closed socket): handled here.
        await asyncio.gather(pump, overflow, revoked, return_exceptions=True)
