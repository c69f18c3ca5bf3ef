"""Live events in one API process: tail the outbox, fan out to WebSocket subscribers.

Every API process runs one ``OutboxTailer``. It wakes on PostgreSQL NOTIFY, or on SQLite on a
write to the database's directory (inotify), with a slow poll as a safety net (a fast poll on
SQLite where inotify is missing), so events written by any process (other
API workers, the CLI, the job worker, other servers on the same PostgreSQL) reach this
process's clients. A message goes straight onto the socket of every subscriber that has
nothing else waiting (one synchronous pass, as ``websockets.broadcast`` does, encoded once);
the others get it through their bounded queue, which their own pump drains with awaits: a
client that cannot keep up is disconnected (it reconnects with ``since`` and misses nothing)
instead of slowing the others or growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orc.db.url import DatabaseUrl

if TYPE_CHECKING:
    import asyncpg
from orc.outbox.events import (
    EVENT_CHANNEL,
    INTERNAL_EVENT_TYPES,
    event_message,
    events_since,
    latest_event_id,
)
from orc.outbox.sqlite_wake import SqliteWake

log = logging.getLogger("orc.live")

QUEUE_LIMIT = 1000
BATCH = 500
SQLITE_POLL_SECONDS = 0.1  # SQLite without a write watcher (not Linux)
SAFETY_POLL_SECONDS = 1.0  # woken by NOTIFY or by the write watcher: the poll is a safety net
SESSION_UPDATE_MIN_INTERVAL = 1.0
SESSION_UPDATE_TRAIL_SECONDS = 0.2
SESSION_EVENT_TYPES = {"state", "tokens", "task_created", "task_deleted"}
ALL = "*"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message for clients, encoded once however many clients receive it."""

    kind: str
    text: str
    event_id: int | None = None
    task_id: str | None = None
    # UTF-8 once for every client, not once per client.
    data: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", self.text.encode())


def encode(message: dict[str, Any]) -> Outgoing:
    event_id = message.get("id") if message["type"] == "event" else None
    return Outgoing(message["type"], json.dumps(message), event_id, message.get("task_id"))


class Subscriber:
    """One WebSocket client: what it subscribed to and its bounded outgoing queue."""

    def __init__(self, limit: int = QUEUE_LIMIT, revocation_key: str | None = None) -> None:
        self.queue: asyncio.Queue[Outgoing] = asyncio.Queue(limit)
        self.topic: str | None = None
        self.overflowed = asyncio.Event()
        # The credential the client connected with; revoking it closes the connection.
        self.revocation_key = revocation_key
        self.revoked = asyncio.Event()
        # While a catch-up runs, live events wait here so they follow the backlog in order.
        self.held: list[Outgoing] | None = None
        # Set by the connection: writes a message to the socket at once if it can without
        # waiting (nothing else being written, nothing buffered); False means "queue it".
        self.write_now: Callable[[Outgoing], bool] | None = None
        # True while the connection's pump is writing a message it took from the queue.
        self.sending = False
        self.last_sent_id = 0

    def wants(self, message: Outgoing) -> bool:
        if self.topic is None:
            return False
        if message.kind == "session_update":
            return self.topic == ALL
        return self.topic == ALL or message.task_id == self.topic

    def offer(self, message: Outgoing) -> None:
        if not self.wants(message) or self.overflowed.is_set():
            return
        if self.held is not None:
            if len(self.held) >= self.queue.maxsize:
                self.overflowed.set()
            else:
                self.held.append(message)
            return
        # Straight to the socket only when that cannot overtake a message still on its way.
        if self.write_now is not None and not self.sending and self.queue.empty():
            if self.already_sent(message):
                return
            if self.write_now(message):
                self.mark_sent(message)
                return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed.set()

    def already_sent(self, message: Outgoing) -> bool:
        """An event at or below the last one sent (the catch-up and the tail can overlap)."""
        return message.event_id is not None and message.event_id <= self.last_sent_id

    def mark_sent(self, message: Outgoing) -> None:
        if message.event_id is not None:
            self.last_sent_id = message.event_id


class Hub:
    """The subscribers of this process."""

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()

    def publish(self, message: dict[str, Any]) -> None:
        if not self.subscribers:
            return
        if message.get("event_type") in INTERNAL_EVENT_TYPES:
            self._revoke(message["data"].get("key"))
            return
        outgoing = encode(message)
        for subscriber in list(self.subscribers):
            subscriber.offer(outgoing)

    def _revoke(self, key: str | None) -> None:
        for subscriber in self.subscribers:
            if key is not None and subscriber.revocation_key == key:
                subscriber.revoked.set()

    def has_firehose(self) -> bool:
        return any(s.topic == ALL for s in self.subscribers)


class OutboxTailer:
    """Delivers new outbox rows to the hub; one per API process."""

    def __init__(
        self,
        hub: Hub,
        database: DatabaseUrl,
        session_update: Callable[[], Awaitable[dict[str, Any]]],
    ) -> None:
        self.hub = hub
        self.database = database
        self.session_update = session_update
        self.last_id = 0
        self.wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._sqlite_wake: SqliteWake | None = None
        self._last_session_update = 0.0
        self._session_pending: asyncio.Task[None] | None = None

    @property
    def is_postgres(self) -> bool:
        return not self.database.is_sqlite

    async def run(self) -> None:
        started = False
        while True:
            try:
                if not started:
                    # Clients catch up with since=; the tailer only delivers what is new.
                    self.last_id = await latest_event_id()
                    started = True
                    self._watch_sqlite()
                if self.is_postgres and self._listener is None:
                    await self._listen()
                delivered = await self.deliver_new()
                if delivered < BATCH:
                    await self._wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be away; keep trying
                log.warning("outbox tail failed: %s", exc)
                await self._drop_listener()
                await asyncio.sleep(1.0)

    async def deliver_new(self) -> int:
        events = await events_since(self.last_id, BATCH, internal=True)
        for event in events:
            self.hub.publish(event_message(event))
            self.last_id = event.id
        if any(e.event_type in SESSION_EVENT_TYPES for e in events):
            await self._publish_session_update()
        return len(events)

    async def _publish_session_update(self) -> None:
        """One session_update a short while after the events it sums up, at most one a second;
        one that is due later is sent later, not lost.

        Trailing the events lets them reach every client first (a second message to each of
        1,000 clients right behind the first doubles what the clients must read before the
        last of them has the event), and one update covers a burst of events.
        """
        if not self.hub.has_firehose() or self._session_pending is not None:
            return
        loop = asyncio.get_running_loop()
        due = self._last_session_update + SESSION_UPDATE_MIN_INTERVAL - loop.time()
        wait = max(due, SESSION_UPDATE_TRAIL_SECONDS)
        self._session_pending = asyncio.create_task(self._session_update_later(wait))

    async def _session_update_later(self, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            self._last_session_update = asyncio.get_running_loop().time()
            self.hub.publish(await self.session_update())
        except Exception as exc:
            log.warning("session update failed: %s", exc)
        finally:
            self._session_pending = None

    def _watch_sqlite(self) -> None:
        """On SQLite, wake on every write of the database by any process (the poll slows)."""
        if self.is_postgres:
            return
        wake = SqliteWake(self.database.sqlite_path, self.wake)
        if wake.start():
            self._sqlite_wake = wake

    async def _wait(self) -> None:
        woken_by_writes = self.is_postgres or self._sqlite_wake is not None
        timeout = SAFETY_POLL_SECONDS if woken_by_writes else SQLITE_POLL_SECONDS
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout)
        self.wake.clear()

    async def _listen(self) -> None:
        import asyncpg  # PostgreSQL only: on SQLite the API need not load it (~3 MiB)

        conn = await asyncpg.connect(**self.database.asyncpg_connect_args())
        await conn.add_listener(EVENT_CHANNEL, lambda *_: self.wake.set())
        conn.add_termination_listener(self._on_listener_lost)
        self._listener = conn

    def _on_listener_lost(self, conn: asyncpg.Connection) -> None:
        if self._listener is conn:
            self._listener = None
            self.wake.set()

    async def _drop_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=2)
            self._listener = None

    async def close(self) -> None:
        if self._session_pending is not None:
            self._session_pending.cancel()
        if self._sqlite_wake is not None:
            self._sqlite_wake.close()
            self._sqlite_wake = None
        await self._drop_listener()
