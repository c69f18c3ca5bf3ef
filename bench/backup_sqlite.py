"""`orc backup now` against `sqlite3 orc.db "VACUUM INTO …"` on a ~1 GiB SQLite database,
restore time, and the p99 latency of 4 writers while a backup runs.

    .venv/bin/python bench/backup_sqlite.py [--size-mib 1024] [--dir /var/tmp/orc-bench-sqlite]

The database is built once (orc's schema, usage_event rows) and reused by later runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import subprocess
import threading
import time
from pathlib import Path

from benchlib import clean_env, orc_command, python_exe


def build(db: Path, size_mib: int, env: dict[str, str]) -> None:
    if db.exists() and db.stat().st_size >= size_mib * 1024 * 1024 * 0.95:
        return
    subprocess.run([*orc_command(), "migrate", "--no-backup"], env=env, check=True)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    batch = 200_000
    while db.stat().st_size < size_mib * 1024 * 1024:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO usage_event (task_number, phase, model, input_tokens, output_tokens, "
            "cache_read_tokens, cache_write_tokens, occurred_at) "
            "SELECT abs(random()) % 5000, 'implement', 'claude-sonnet-4-' || (i % 7), "
            "abs(random()) % 100000, abs(random()) % 20000, abs(random()) % 50000, "
            "abs(random()) % 1000, strftime('%Y-%m-%d %H:%M:%f+00:00', 'now', "
            "'-' || (abs(random()) % 8000000) || ' seconds') || hex(randomblob(12)) FROM n",
            (batch,),
        )
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def timed(args: list[str], env: dict[str, str]) -> float:
    return timed_cpu(args, env)[0]


def timed_cpu(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, user + system CPU seconds) of one command run to its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


# The parts of a verified copy alone, each a fresh process on the copy at FLOOR_COPY, as orc
# does them (orc.backup.sqlite): what no overlap can take away from `orc backup now`.
FLOOR_COPY_PY = """
import os, sqlite3, sys
src, dst = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
dst.execute("PRAGMA journal_mode=OFF"); dst.execute("PRAGMA synchronous=OFF")
src.backup(dst, pages=-1); dst.execute("PRAGMA journal_mode=DELETE"); dst.close()
fd = os.open(sys.argv[2], os.O_RDONLY); os.fsync(fd); os.close(fd)
"""
FLOOR_CHECK_PY = """
import sys
from orc.backup.sqlite import integrity_problem
assert integrity_problem(__import__("pathlib").Path(sys.argv[1]), full=False) is None
"""
FLOOR_HASH_PY = """
import sys
from orc.backup.files import sha256_file
sha256_file(__import__("pathlib").Path(sys.argv[1]))
"""


def floor(db: Path, out: Path, rounds: int, env: dict[str, str]) -> None:
    """VACUUM INTO against the backup API copy, quick_check and sha256 alone, interleaved."""
    python = python_exe()
    steps = {
        "VACUUM INTO": ["sqlite3", str(db), f"VACUUM INTO '{out}'"],
        "backup API copy + fsync": [python, "-c", FLOOR_COPY_PY, str(db), str(out)],
        "quick_check of the copy": [python, "-c", FLOOR_CHECK_PY, str(out)],
        "sha256 of the copy": [python, "-c", FLOOR_HASH_PY, str(out)],
        "orc backup now": [*orc_command(), "backup", "now", "-q"],
    }
    seen: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for i in range(rounds):
        for name, argv in steps.items():
            if name in ("VACUUM INTO", "backup API copy + fsync"):
                out.unlink(missing_ok=True)
            wall, cpu = timed_cpu(argv, env)
            seen[name].append((wall, cpu))
            load = os.getloadavg()[0]
            print(f"  round {i + 1} (load {load:.1f}) {name}: {wall:.2f}s, CPU {cpu:.2f}s")
    out.unlink(missing_ok=True)
    medians = {n: [statistics.median(x[k] for x in v) for k in (0, 1)] for n, v in seen.items()}
    base_wall, base_cpu = medians["VACUUM INTO"]
    for name, (wall, cpu) in medians.items():
        print(
            f"{name}: median {wall:.2f}s ({wall / base_wall:.2f}x), "
            f"CPU {cpu:.2f}s ({cpu / base_cpu:.2f}x)"
        )
    copy, check, digest = (medians[n][1] for n in list(steps)[1:4])
    print(
        f"floor by CPU: copy + check {(copy + check) / base_cpu:.2f}x VACUUM INTO, "
        f"+ sha256 {(copy + check + digest) / base_cpu:.2f}x"
    )


def writers_during_backup(db: Path, env: dict[str, str]) -> tuple[list[float], int, float]:
    stop = threading.Event()
    latencies: list[float] = []
    errors = 0

    def write() -> None:
        nonlocal errors
        conn = sqlite3.connect(db, timeout=5, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        while not stop.is_set():
            started = time.perf_counter()
            try:
                conn.execute(
                    "INSERT INTO server_state (key, value, updated_at) VALUES (?, 'x', "
                    "'2026-01-01 00:00:00+00:00')",
                    (f"bench-{threading.get_ident()}-{started}",),
                )
            except sqlite3.Error:
                errors += 1
            latencies.append(time.perf_counter() - started)
            time.sleep(0.005)
        conn.close()

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    seconds = timed([*orc_command(), "backup", "now", "-q"], env)
    stop.set()
    for thread in threads:
        thread.join()
    return latencies, errors, seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp/orc-bench-sqlite"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--skip-slow", action="store_true", help="skip the full-check backup and the restore"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="only VACUUM INTO against each part of orc's verified copy alone (wall and CPU)",
    )
    args = parser.parse_args()
    home = args.dir / "home"
    env = clean_env(home, args.dir / "user")
    env["ORC_BACKUP_DIR"] = str(args.dir / "backups")
    db = home / "orc.db"
    build(db, args.size_mib, env)
    print(f"load average {os.getloadavg()}; database {db.stat().st_size / 2**20:.0f} MiB")
    vacuum_out = args.dir / "vacuum-into.db"
    if args.floor:
        floor(db, vacuum_out, args.rounds, env)
        return
    vacuum, ours = [], []
    for _ in range(args.rounds):
        vacuum_out.unlink(missing_ok=True)
        vacuum.append(timed(["sqlite3", str(db), f"VACUUM INTO '{vacuum_out}'"], env))
        vacuum_out.unlink(missing_ok=True)
        ours.append(timed([*orc_command(), "backup", "now", "-q"], env))
    v, o = statistics.median(vacuum), statistics.median(ours)
    print(f"sqlite3 VACUUM INTO: {v:.2f}s (runs {[round(x, 2) for x in vacuum]})")
    print(
        f"orc backup now (copy + quick_check + sha256 + fsync): {o:.2f}s "
        f"(runs {[round(x, 2) for x in ours]}); ratio {o / v:.2f}x"
    )
    if not args.skip_slow:
        full = timed([*orc_command(), "backup", "now", "-q"], {**env, "ORC_BACKUP_CHECK": "full"})
        print(
            f"orc backup now with ORC_BACKUP_CHECK=full (integrity_check): {full:.2f}s; "
            f"ratio {full / v:.2f}x"
        )
        restore = timed([*orc_command(), "backup", "restore", "latest", "--force"], env)
        print(
            f"orc backup restore latest (checksum + safety backup + copy + integrity_check): "
            f"{restore:.2f}s"
        )
    latencies, errors, seconds = writers_during_backup(db, env)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(
        f"4 writers during a {seconds:.1f}s backup: {len(latencies)} inserts, {errors} errors, "
        f"p50 {statistics.median(latencies) * 1000:.2f} ms, p99 {p99:.2f} ms, "
        f"max {latencies[-1] * 1000:.2f} ms"
    )
    subprocess.run([*orc_command(), "backup", "prune"], env=env, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
