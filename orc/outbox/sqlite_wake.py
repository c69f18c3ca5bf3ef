"""Wake an SQLite outbox tailer as soon as any process writes the database (Linux inotify).

SQLite has no NOTIFY: the tailer polled every 0.1 s, so an event written by the job worker
(an agent's message) waited 50 ms on average and up to 100 ms before the API process even
looked (bench/run_event_latency.py). In WAL mode every commit writes the ``-wal`` file; a
watch on the database's directory (the WAL file is removed and made again as connections
come and go) wakes the tailer on each write of that file or of the database itself. The
poll stays as the safety net: a wake may come a moment before the commit is visible, and
where inotify is missing (not Linux) nothing else wakes the tailer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("orc.live")


class SqliteWake:
    """Sets ``wake`` whenever the database file or its WAL is written, by any process."""

    def __init__(self, database: Path, wake: asyncio.Event) -> None:
        self.directory = database.parent
        self.names = {database.name, database.name + "-wal"}
        self.wake = wake
        self._inotify: Any = None  # inotify_simple.INotify (untyped)
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> bool:
        """Watch the database's directory; False (polling alone) where inotify is missing."""
        try:
            from inotify_simple import INotify, flags
        except ImportError:  # not Linux
            return False
        try:
            inotify = INotify(nonblocking=True)
        except OSError as exc:  # e.g. the per-user instance limit
            log.info("no inotify (%s): the outbox is polled", exc)
            return False
        try:
            inotify.add_watch(self.directory, flags.MODIFY | flags.CREATE | flags.MOVED_TO)
        except OSError as exc:
            inotify.close()
            log.info("cannot watch %s (%s): the outbox is polled", self.directory, exc)
            return False
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(inotify.fileno(), self._on_events)
        self._inotify = inotify
        return True

    def _on_events(self) -> None:
        from inotify_simple import flags

        try:
            events = self._inotify.read(timeout=0)
        except OSError:
            return
        if any(e.name in self.names or e.mask & flags.Q_OVERFLOW for e in events):
            self.wake.set()

    def close(self) -> None:
        inotify, self._inotify = self._inotify, None
        if inotify is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(inotify.fileno())
        with contextlib.suppress(OSError):
            inotify.close()
