"""Wake the worker's dispatcher when a run may have been queued, instead of at its next poll.

A run queued through the API or the CLI waited up to the dispatcher's 1 s poll before it was
claimed (bench/run_overhead.py: median 0.64 s before a batch's first runs started). The same
signals that wake the API's outbox tailer wake the dispatcher: PostgreSQL's NOTIFY on the
outbox channel (queuing a run emits its state event), or on SQLite a write of the database by
any process (inotify). The poll stays as the safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from orc.db.url import DatabaseUrl
from orc.outbox.events import EVENT_CHANNEL
from orc.outbox.sqlite_wake import SqliteWake

log = logging.getLogger("orc.runs")


class NewWorkSignal:
    """Sets ``event`` on every change in the database that may have queued a run."""

    def __init__(self, database: DatabaseUrl, event: asyncio.Event) -> None:
        self.database = database
        self.event = event
        self._sqlite: SqliteWake | None = None
        self._listener: Any = None  # asyncpg.Connection (PostgreSQL only)

    async def start(self) -> None:
        """Start listening; without a signal (no inotify, PostgreSQL away) the poll remains."""
        try:
            if self.database.is_sqlite:
                wake = SqliteWake(self.database.sqlite_path, self.event)
                if wake.start():
                    self._sqlite = wake
                return
            import asyncpg

            conn = await asyncpg.connect(**self.database.asyncpg_connect_args())
            await conn.add_listener(EVENT_CHANNEL, lambda *_: self.event.set())
            self._listener = conn
        except Exception as exc:  # the poll still finds queued runs
            log.info("runs are found by polling only: %s", exc)

    async def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=2)
            self._listener = None
