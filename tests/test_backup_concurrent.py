"""A backup taken while 4 writers insert continuously: consistent, and the writers never notice."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import asyncpg
import pytest

from orc.db.url import DatabaseUrl
from tests.backup_support import backup_dir, fill, orc_ok
from tests.support import ORC

WRITERS = 4


class Writer(threading.Thread):
    """Inserts w<id>-<seq> keys, one per transaction, and times each insert."""

    def __init__(self, database_url: str, ident: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.database_url, self.number, self.halt = database_url, ident, stop
        self.seq = 0
        self.samples: list[tuple[float, float]] = []  # (started, seconds)
        self.errors: list[str] = []

    def key(self) -> str:
        return f"w{self.number}-{self.seq:08d}"

    def run(self) -> None:
        if DatabaseUrl(self.database_url).is_sqlite:
            self._run_sqlite()
        else:
            asyncio.run(self._run_pg())

    def _run_sqlite(self) -> None:
        conn = sqlite3.connect(
            str(DatabaseUrl(self.database_url).sqlite_path), timeout=5, isolation_level=None
        )
        conn.execute("PRAGMA busy_timeout=5000")
        while not self.halt.is_set():
            self.seq += 1
            started = time.perf_counter()
            try:
                conn.execute(
                    "INSERT INTO server_state (key, value, updated_at) VALUES (?, 'x', "
                    "'2026-01-01 00:00:00+00:00')",
                    (self.key(),),
                )
            except sqlite3.Error as exc:
                self.errors.append(str(exc))
            self.samples.append((started, time.perf_counter() - started))
            time.sleep(0.002)
        conn.close()

    async def _run_pg(self) -> None:
        conn = await asyncpg.connect(**DatabaseUrl(self.database_url).asyncpg_connect_args())
        while not self.halt.is_set():
            self.seq += 1
            started = time.perf_counter()
            try:
                await conn.execute(
                    "INSERT INTO server_state (key, value, updated_at) VALUES ($1, 'x', now())",
                    self.key(),
                )
            except asyncpg.PostgresError as exc:
                self.errors.append(str(exc))
            self.samples.append((started, time.perf_counter() - started))
            await asyncio.sleep(0.002)
        await conn.close()


def _keys_in_backup(path: Path, database_url: str) -> list[str]:
    if DatabaseUrl(database_url).is_sqlite:
        conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            return [r[0] for r in conn.execute("SELECT key FROM server_state WHERE key LIKE 'w%'")]
        finally:
            conn.close()
    script = subprocess.run(
        ["pg_restore", "--data-only", "--table=server_state", "-f", "-", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split("\t")[0] for line in script.splitlines() if line.startswith("w")]


@pytest.mark.slow
def test_backup_during_four_writers_is_a_consistent_prefix_and_writers_see_no_errors(
    migrated, orc_env, database_url
):
    fill(database_url, 300_000)  # tens of MiB, so the backup overlaps many writes
    stop = threading.Event()
    writers = [Writer(database_url, i, stop) for i in range(WRITERS)]
    for writer in writers:
        writer.start()
    # Each writer has committed before the backup starts, so the snapshot holds some of each
    # writer's rows (a writer can wait over a second for SQLite's write lock on a busy machine).
    deadline = time.monotonic() + 30
    while not all(w.samples for w in writers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(w.samples for w in writers), "a writer never committed"
    time.sleep(0.3)
    started = time.perf_counter()
    result = subprocess.run(
        [*ORC, "backup", "now", "-q"], env=orc_env, capture_output=True, text=True, timeout=300
    )
    finished = time.perf_counter()
    time.sleep(0.3)
    stop.set()
    for writer in writers:
        writer.join(30)
    assert result.returncode == 0, result.stderr
    name = result.stdout.strip()

    assert [e for w in writers for e in w.errors] == []
    during = sorted(s for w in writers for t, s in w.samples if started <= t <= finished)
    # (A faster start of `orc backup now` left 11 writes inside it once, at 150,000 rows.)
    assert len(during) > 10, "the backup was too quick to overlap the writers"
    p99 = during[int(len(during) * 0.99) - 1]
    print(
        f"\n{database_url.split(':')[0]}: backup {finished - started:.2f}s, {len(during)} inserts "
        f"during it, p50 {during[len(during) // 2] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {during[-1] * 1000:.1f} ms"
    )

    orc_ok(["backup", "verify", name], orc_env)
    keys = _keys_in_backup(backup_dir(orc_env) / name, database_url)
    for writer in writers:
        seqs = sorted(int(k.split("-")[1]) for k in keys if k.startswith(f"w{writer.number}-"))
        # A consistent snapshot holds each writer's first n inserts, no gaps, and not all of them.
        assert seqs == list(range(1, len(seqs) + 1)), f"writer {writer.number} has gaps"
        assert 0 < len(seqs) < writer.seq
