"""The Huey instance. Producers and the consumer import it by this same path (task names
include it) and point it at the queue file with ``configure_queue(settings)`` before use, so
importing a job module reads no settings and creates no file."""

from __future__ import annotations

import threading
from typing import Any

from huey import Huey
from huey.storage import SqliteStorage

from orc.config import Settings
from orc.db.private_file import make_sqlite_private


class UnconfiguredQueue:
    """The storage until ``configure_queue``: any use says what is missing."""

    def __init__(self, name: str, **storage_kwargs: Any) -> None:
        self.name = name

    def close(self) -> bool:
        return False

    def __getattr__(self, attr: str) -> Any:
        raise RuntimeError(
            "the job queue is not configured: call workers.queue.configure_queue(settings) first"
        )


huey = Huey(name="orc", utc=True, storage_class=UnconfiguredQueue)
_configure_lock = threading.Lock()


def configure_queue(settings: Settings) -> Huey:
    """Point the queue at ``settings.queue_path`` (WAL, so producers never block the consumer)."""
    filename = str(settings.queue_path)
    with _configure_lock:
        if huey.storage_kwargs.get("filename") != filename:
            settings.queue_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            make_sqlite_private(settings.queue_path)  # queued jobs name tasks and settings
            previous = huey.storage
            huey.storage_class = SqliteStorage
            huey.storage_kwargs = {"filename": filename, "journal_mode": "wal", "timeout": 10}
            huey.storage = huey.create_storage()
            previous.close()
    return huey
