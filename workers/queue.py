"""The Huey instance. Producers and the consumer import it by this same path."""

from __future__ import annotations

from pathlib import Path

from huey import SqliteHuey

from orc.config import load_settings


def make_huey(queue_path: Path) -> SqliteHuey:
    """A SqliteHuey whose queue lives at ``queue_path`` (WAL, so producers never block it)."""
    queue_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return SqliteHuey(
        name="orc", filename=str(queue_path), journal_mode="wal", timeout=10, utc=True
    )


huey = make_huey(load_settings().queue_path)
