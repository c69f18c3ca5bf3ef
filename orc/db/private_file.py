"""Files only their owner may read: databases, the job queue, backups and keys.

Their directory may be wider than 0700 (a volume, an existing ORC_HOME), and new files take
their mode from the process's umask (0644 usually): so orc makes each file 0600 itself, before
anything is written to it. SQLite gives a database's ``-wal``/``-shm``/``-journal`` files the
mode of the database file, so a private database keeps its companions private too.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PRIVATE_MODE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def make_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it is missing; take group and other permissions
    off it if it exists (a file made by an older orc, or copied in)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            # Not ours to change when another user owns it; SQLite or the copy says so.
            with contextlib.suppress(PermissionError):
                os.chmod(path, mode & stat.S_IRWXU)
        return
    os.close(fd)


def make_sqlite_private(path: Path) -> None:
    """``make_private`` for an SQLite database and the companion files it has now."""
    make_private(path)
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            make_private(companion)
