"""SQLite backups: an online copy with the backup API, checked with PRAGMA integrity_check.

The copy runs as one step of SQLite's backup API, which is one read transaction: in WAL mode
writers go on writing while it runs, and the copy is the database as of its start.
"""

from __future__ import annotations

import gzip
import shutil
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from orc.backup.files import CHUNK, fsync_file, remove_quietly, sha256_file, watch_size
from orc.backup.manifest import BackupError

BUSY_TIMEOUT_MS = 5000
# A large page cache makes integrity_check of a big file several times faster.
CHECK_CACHE_KIB = 256 * 1024
# The copy and the check read their file through a memory map, not a read() and a copy per
# page: quick_check of 1 GiB 0.9 -> 0.2 s of system time here, the copy 1.62-2.55 -> 1.25-1.55 s
# (SQLite's own map; in WAL mode other processes' writers are no danger to it).
MMAP_BYTES = 1 << 40
MIGRATIONS_QUERY = "SELECT name FROM tortoise_migrations WHERE app = 'orc' ORDER BY name"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if "disk is full" in text or "No space left" in text:
        return "no space left on the device of the backup directory"
    return text


def copy_sqlite(source: Path, dest: Path, on_bytes: Callable[[int], object] | None = None) -> None:
    """Copy the live database ``source`` to the new file ``dest`` (one consistent snapshot)."""
    if not source.is_file():
        raise BackupError(f"database file {source} does not exist")
    src = sqlite3.connect(source, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        src.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        dst = sqlite3.connect(dest)
        try:
            # No rollback journal for a file that is thrown away if anything fails.
            dst.execute("PRAGMA journal_mode=OFF")
            # No syncs while copying either: the file is fsynced once, during the check, and
            # the disk is kept writing meanwhile, so that fsync has little left to wait for.
            dst.execute("PRAGMA synchronous=OFF")
            with watch_size(dest, on_bytes, writeback=True):
                src.backup(dst, pages=-1)
            # The copy inherits WAL mode from the header; a backup file is a plain file.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"copying {source} failed: {_describe(exc)}") from None
    finally:
        src.close()


def _open_readonly(path: Path) -> sqlite3.Connection:
    # immutable: no locks, no -wal/-shm files, and a guarantee that nothing writes the file.
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)


def integrity_problem(path: Path, full: bool = True) -> str | None:
    """None when ``PRAGMA integrity_check`` (or ``quick_check``) says ok, else its complaint.

    quick_check verifies every page, b-tree and record but not that each index matches its
    table, which on a big database costs ten times more than copying it (see bench/).
    """
    pragma = "integrity_check" if full else "quick_check"
    try:
        conn = _open_readonly(path)
        try:
            conn.execute(f"PRAGMA cache_size=-{CHECK_CACHE_KIB}")
            conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
            rows = conn.execute(f"PRAGMA {pragma}(10)").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return str(exc)
    if rows == [("ok",)]:
        return None
    return "; ".join(str(row[0]) for row in rows[:3])


def applied_migrations(path: Path) -> list[str]:
    """Migration names recorded in the database file at ``path`` (empty for a new one)."""
    try:
        conn = _open_readonly(path)
        try:
            return [row[0] for row in conn.execute(MIGRATIONS_QUERY)]
        finally:
            conn.close()
    except sqlite3.Error:
        return []


def check_and_hash(path: Path, full: bool, on_bytes: Callable[[int], object] | None = None) -> str:
    """Integrity-check, hash and fsync ``path`` at the same time; return the sha256.

    The three overlap: the check and the hash read the page cache while the disk writes.
    """
    with ThreadPoolExecutor(max_workers=2) as pool:
        flushed = pool.submit(fsync_file, path)
        digest = pool.submit(sha256_file, path, on_bytes)
        problem = integrity_problem(path, full)
        sha = digest.result()
        flushed.result()
    if problem is not None:
        raise BackupError(f"the copy failed its integrity check: {problem}")
    return sha


def gzip_file(source: Path, dest: Path, on_bytes: Callable[[int], object] | None = None) -> None:
    """Compress ``source`` into ``dest`` (fast level: backups must not take minutes)."""
    done = 0
    try:
        with source.open("rb") as src, gzip.open(dest, "wb", compresslevel=1) as dst:
            while chunk := src.read(CHUNK):
                dst.write(chunk)
                done += len(chunk)
                if on_bytes is not None:
                    on_bytes(done)
    except OSError as exc:
        remove_quietly(dest)
        raise BackupError(f"compressing the backup failed: {_describe(exc)}") from None


def gunzip_file(source: Path, dest: Path) -> None:
    """Decompress a gzip backup into ``dest``."""
    try:
        with gzip.open(source, "rb") as src, dest.open("wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
    except (OSError, EOFError) as exc:
        remove_quietly(dest)
        raise BackupError(f"cannot decompress {source.name}: {_describe(exc)}") from None


def companions(db: Path) -> list[Path]:
    """The files SQLite may create beside ``db`` (journal, WAL, shared memory)."""
    return [db.with_name(db.name + suffix) for suffix in ("-journal", "-wal", "-shm")]


def sidecars(db: Path) -> tuple[Path, Path]:
    """The ``-wal`` and ``-shm`` files of a database."""
    return db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")
