"""File helpers for backups: durable writes, atomic renames, checksums."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from orc.backup.writeback import start_writeback
from orc.db.private_file import make_private

CHUNK = 4 * 1024 * 1024
WATCH_SECONDS = 0.2


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (a rename is durable only after this)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(temp: Path, final: Path) -> None:
    """fsync ``temp``, rename it to ``final`` atomically, fsync the directory (owner-only)."""
    os.chmod(temp, 0o600)  # a backup holds everything the database holds
    fsync_file(temp)
    os.replace(temp, final)
    fsync_dir(final.parent)


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file, so a reader sees all of it or nothing."""
    temp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    try:
        make_private(temp)
        with temp.open("wb") as handle:
            handle.write(data)
        publish(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def sha256_file(path: Path, on_bytes: Callable[[int], object] | None = None) -> str:
    """The file's sha256 in hex; ``on_bytes`` is told how many bytes were read so far."""
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if on_bytes is not None:
                on_bytes(done)
    return digest.hexdigest()


def remove_quietly(*paths: Path) -> None:
    """Delete files that may not exist."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def watch_size(
    path: Path, on_bytes: Callable[[int], object] | None, writeback: bool = False
) -> Iterator[None]:
    """While a copy that has no progress hook writes ``path``: report its growing size and,
    with ``writeback``, keep the disk writing what is already there (see writeback.py)."""
    if on_bytes is None and not writeback:
        yield
        return
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(WATCH_SECONDS):
            with contextlib.suppress(OSError):
                if on_bytes is not None:
                    on_bytes(path.stat().st_size)
                if writeback:
                    start_writeback(path)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
