"""SQLite's page cache under a writer in another connection: CPU per read at 2 MiB and 8 MiB.

In WAL mode a connection drops its page cache whenever another connection has committed, as
the API's connection does at each of the job worker's folds. One connection here reads two
point lookups by a random task (the task, and its usage by an index) while another commits
every ``--every`` seconds; printed: the reader's CPU per read, per table size and cache size,
each twice, interleaved. Nothing of orc runs: this measures SQLite alone.

Run: .venv/bin/python bench/sqlite_page_cache.py [--seconds 8] [--every 0.2]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

SIZES = (5_000, 20_000, 50_000, 100_000)
CACHES_KIB = (2_000, 8_192)


def seed(path: Path, rows: int) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE task (number INTEGER PRIMARY KEY, title TEXT, body TEXT)")
    db.execute("CREATE TABLE usage (id INTEGER PRIMARY KEY, task INTEGER, tokens INTEGER)")
    db.execute("CREATE INDEX usage_task ON usage (task)")
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO task VALUES (?, ?, ?)", ((i, f"title {i}", "x" * 150) for i in range(rows))
    )
    db.executemany(
        "INSERT INTO usage (task, tokens) VALUES (?, ?)", ((i % rows, i) for i in range(rows * 5))
    )
    db.execute("COMMIT")
    db.close()


def reads(path: Path, rows: int, cache_kib: int, seconds: float, every: float) -> float:
    """The reader's CPU seconds per read while the writer commits every ``every`` seconds."""
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute(f"PRAGMA cache_size=-{cache_kib}")
    stop = threading.Event()

    def write() -> None:
        while not stop.wait(every):
            writer.execute("INSERT INTO usage (task, tokens) VALUES (1, 1)")

    thread = threading.Thread(target=write)
    thread.start()
    rng = random.Random(1)
    done = 0
    started, end = time.thread_time(), time.monotonic() + seconds
    while time.monotonic() < end:
        number = rng.randrange(rows)
        reader.execute("SELECT * FROM task WHERE number = ?", (number,)).fetchall()
        reader.execute("SELECT sum(tokens) FROM usage WHERE task = ?", (number,)).fetchall()
        done += 1
    cpu = time.thread_time() - started
    stop.set()
    thread.join()
    reader.close()
    writer.close()
    return cpu / done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="of reads per measurement")
    parser.add_argument("--every", type=float, default=0.2, help="seconds between commits")
    args = parser.parse_args()
    for rows in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cache.db"
            seed(path, rows)
            size = path.stat().st_size / 2**20
            cells = [
                f"{cache} KiB {reads(path, rows, cache, args.seconds, args.every) * 1e6:5.1f} µs"
                for cache in CACHES_KIB * 2
            ]
            print(f"{rows:7,d} tasks ({size:5.1f} MiB): " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
