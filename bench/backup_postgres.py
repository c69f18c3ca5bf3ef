"""`orc backup now` against plain `pg_dump -Fc` on a ~1 GiB PostgreSQL database, and restore times.

    .venv/bin/python bench/backup_postgres.py [--size-mib 1024] [--rounds 2] [--skip-restore]

Uses (and keeps) the database orc_bench_backup on 127.0.0.1:5432 (user postgres).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchlib import clean_env, orc_command

DB = "orc_bench_backup"
URL = f"postgres://postgres@127.0.0.1:5432/{DB}?sslmode=disable"
PSQL = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-v", "ON_ERROR_STOP=1"]


def size_mib() -> float:
    out = subprocess.run(
        [*PSQL, "-d", DB, "-Atc", "SELECT pg_database_size(current_database())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout) / 2**20


def build(target: int, env: dict[str, str]) -> None:
    exists = subprocess.run(
        [*PSQL, "-d", "postgres", "-Atc", f"SELECT 1 FROM pg_database WHERE datname = '{DB}'"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not exists:
        subprocess.run([*PSQL, "-d", "postgres", "-c", f"CREATE DATABASE {DB}"], check=True)
    subprocess.run([*orc_command(), "migrate", "--no-backup"], env=env, check=True)
    while size_mib() < target:
        subprocess.run(
            [
                *PSQL,
                "-d",
                DB,
                "-c",
                "INSERT INTO usage_event (task_number, phase, model, input_tokens, output_tokens, "
                "cache_read_tokens, cache_write_tokens, occurred_at) "
                "SELECT (random() * 5000)::int, 'implement', 'claude-sonnet-4-' || (i % 7), "
                "(random() * 100000)::int, (random() * 20000)::int, (random() * 50000)::int, "
                "(random() * 1000)::int, now() - random() * interval '90 days' "
                "FROM generate_series(1, 1000000) AS i",
            ],
            check=True,
        )


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-restore", action="store_true", help="skip the two restores")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="orc-bench-pg-"))
    env = clean_env(work / "home", work / "user")
    env["DATABASE_URL"] = URL
    build(args.size_mib, env)
    print(f"load average {os.getloadavg()}; database {size_mib():.0f} MiB")
    plain_out = work / "plain.dump"
    plain, ours = [], []
    pg_env = {**env, "PGHOST": "127.0.0.1", "PGUSER": "postgres", "PGDATABASE": DB}
    for _ in range(args.rounds):
        plain_out.unlink(missing_ok=True)
        plain.append(timed(["pg_dump", "-Fc", "-f", str(plain_out)], pg_env))
        ours.append(timed([*orc_command(), "backup", "now", "-q"], env))
    p, o = statistics.median(plain), statistics.median(ours)
    print(f"pg_dump -Fc: {p:.2f}s (runs {[round(x, 2) for x in plain]})")
    print(
        f"orc backup now (pg_dump + pg_restore --list + sha256 + fsync): {o:.2f}s "
        f"(runs {[round(x, 2) for x in ours]}); ratio {o / p:.2f}x"
    )
    if args.skip_restore:
        return
    plain_restore = timed(
        [
            "pg_restore",
            "--clean",
            "--if-exists",
            "--single-transaction",
            "--no-owner",
            "-d",
            DB,
            str(plain_out),
        ],
        pg_env,
    )
    print(f"pg_restore --clean --if-exists --single-transaction: {plain_restore:.2f}s")
    restore = timed([*orc_command(), "backup", "restore", "latest", "--force"], env)
    print(f"orc backup restore latest (verify + safety backup + pg_restore): {restore:.2f}s")


if __name__ == "__main__":
    main()
