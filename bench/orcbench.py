"""Helpers for the benchmarks of tasks, usage, aggregation, WebSocket fan-out and metrics.

Not a benchmark itself. On top of benchlib: a throw-away store (SQLite in a temporary
``ORC_HOME``, or a new PostgreSQL database ``orc_bench_<random>`` that is dropped afterwards),
migrated with ``orc migrate``; ``orc serve`` on that store; a keep-alive HTTP client that
times each request; percentiles; bulk inserts written in SQL (fast, no API involved).

PostgreSQL: ``--pg-url`` of the scripts (default postgres://postgres@127.0.0.1:5432/postgres)
names the maintenance database the bench connects to to create and drop its own databases.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import math
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import benchlib

DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"
SERVE_ARGS = ("--workers", "1", "--no-worker")
TOKEN_MODELS = (
    "claude-sonnet-4-5",
    "claude-opus-4-1",
    "claude-haiku-4-5",
    "claude-opus-4-5",
    "claude-sonnet-4",
    "claude-3-7-sonnet",
    "bench-unpriced-a",
    "bench-unpriced-b",
)


# ----------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def ms_line(values: Sequence[float]) -> str:
    """``p50 … p99 … max … mean … (n=…)`` in milliseconds, from values in seconds."""
    if not values:
        return "no data"
    ms = [v * 1000 for v in values]
    return (
        f"p50 {percentile(ms, 50):7.2f} ms  p99 {percentile(ms, 99):7.2f} ms  "
        f"max {max(ms):7.2f} ms  mean {statistics.fmean(ms):7.2f} ms  (n={len(ms)})"
    )


# ----------------------------------------------------------------------------- stores


@dataclass
class Store:
    """A migrated database and the ORC_HOME/HOME that go with it."""

    kind: str  # "sqlite" or "postgres"
    data_dir: Path
    database_url: str

    @property
    def env(self) -> dict[str, str]:
        env = benchlib.clean_env(self.data_dir / "home", self.data_dir / "user")
        if self.kind == "postgres":
            env["DATABASE_URL"] = self.database_url
        return env

    @property
    def label(self) -> str:
        return "SQLite" if self.kind == "sqlite" else "PostgreSQL"


def _pg_url_for(pg_url: str, database: str) -> str:
    parts = urlsplit(pg_url)
    query = parts.query or "sslmode=disable"
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, query, ""))


async def _pg_admin(pg_url: str, statement: str) -> None:
    import asyncpg  # a dependency of orc

    parts = urlsplit(pg_url)
    conn = await asyncpg.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username,
        password=parts.password,
        database=parts.path.lstrip("/") or "postgres",
        ssl=False,
    )
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def orc_cli(store: Store, *args: str, timeout: float = 300) -> str:
    """Run ``orc <args>`` on the store; return its stdout (raises on failure)."""
    done = subprocess.run(
        [*benchlib.orc_command(), *args],
        env=store.env,
        cwd=store.data_dir,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"orc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@contextlib.contextmanager
def make_store(
    kind: str, root: Path, pg_url: str = DEFAULT_PG_URL, name: str = ""
) -> Iterator[Store]:
    """A new, migrated store under ``root``; a PostgreSQL database is dropped afterwards."""
    data_dir = root / (f"{kind}-{name}" if name else kind)
    data_dir.mkdir(parents=True, exist_ok=True)
    if kind == "sqlite":
        store = Store(kind, data_dir, f"sqlite://{data_dir / 'home' / 'orc.db'}")
        orc_cli(store, "migrate")
        yield store
        return
    database = f"orc_bench_{secrets.token_hex(4)}"
    asyncio.run(_pg_admin(pg_url, f'CREATE DATABASE "{database}"'))
    try:
        store = Store(kind, data_dir, _pg_url_for(pg_url, database))
        orc_cli(store, "migrate")
        yield store
    finally:
        asyncio.run(_pg_admin(pg_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def start_orc(
    store: Store, port: int | None = None, tag: str = "", pythonpath: Path | None = None
) -> benchlib.Server:
    """``orc serve --workers 1 --no-worker`` on the store, started and healthy; with
    ``pythonpath``, the orc found there (an export of another version) instead of this one."""
    port = port or benchlib.free_port()
    server = benchlib.orc_server(store.data_dir, port, SERVE_ARGS, tag=tag or f"-{store.kind}")
    server.env = store.env if pythonpath is None else {**store.env, "PYTHONPATH": str(pythonpath)}
    server.start()
    try:
        server.wait_healthy()
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.asynccontextmanager
async def orc_database(store: Store) -> AsyncIterator[Any]:
    """Tortoise opened on the store in this process (as orc's own code uses it)."""
    from orc.db import close_database, default_connection, open_database

    await open_database(store.database_url)
    try:
        yield default_connection()
    finally:
        await close_database()


# ----------------------------------------------------------------------------- bulk inserts

_SERIES = {
    # A series of integers x = lo..hi as a row source, in each dialect.
    "sqlite": "(WITH RECURSIVE s(x) AS (SELECT ? UNION ALL SELECT x + 1 FROM s WHERE x < ?) "
    "SELECT x FROM s) AS s",
    "postgres": "generate_series(CAST(? AS BIGINT), CAST(? AS BIGINT)) AS s(x)",
}
_FLOAT = {"sqlite": "REAL", "postgres": "DOUBLE PRECISION"}


def _timestamp_sql(kind: str, epoch_expr: str) -> str:
    """SQL for a timestamp from epoch seconds, in the format orc stores on that database."""
    if kind == "sqlite":
        # Tortoise writes str(datetime): "2026-01-02 03:04:05.123456+00:00".
        return f"(strftime('%Y-%m-%d %H:%M:%f', {epoch_expr}, 'unixepoch') || '000+00:00')"
    return f"to_timestamp({epoch_expr})"


async def insert_tasks(conn: Any, kind: str, count: int, start_epoch: float) -> None:
    """``count`` tasks (mixed weights and statuses), one second apart from ``start_epoch``."""
    from orc.db.sql import fetch

    ts = _timestamp_sql(kind, f"CAST(? AS {_FLOAT[kind]}) + x")
    weights = "CASE x % 4 WHEN 0 THEN 'trivial' WHEN 1 THEN 'small' WHEN 2 THEN 'medium' "
    weights += "ELSE 'large' END"
    statuses = "CASE x % 5 WHEN 0 THEN 'running' WHEN 1 THEN 'completed' WHEN 2 THEN 'planned' "
    statuses += "WHEN 3 THEN 'paused' ELSE 'created' END"
    await fetch(
        conn,
        "INSERT INTO task (title, description, weight, status, current_phase, created_by, "
        "created_at, updated_at) "
        f"SELECT 'bench task number ' || x, 'A task created by the benchmark, number ' || x, "
        f"{weights}, {statuses}, 'implement', 'bench', {ts}, {ts} FROM {_SERIES[kind]}",
        [start_epoch, start_epoch, 1, count],
    )


async def insert_usage(
    conn: Any,
    kind: str,
    first: int,
    last: int,
    start_epoch: float,
    seconds_apart: float,
    models: Sequence[str],
    events_per_task: int = 100,
) -> None:
    """Usage events number ``first``..``last`` (1-based, in id order), generated in SQL.

    Event x belongs to task ``1 + (x - 1) // events_per_task``, uses model
    ``models[x * 7 % len(models)]``, happens at ``start_epoch + x * seconds_apart``; its token
    counts are fixed functions of x (so totals can be checked).
    """
    from orc.db.sql import fetch

    n = len(models)
    model_case = "CASE (x * 7) % " + str(n) + " "
    model_case += " ".join(f"WHEN {i} THEN '{m}'" for i, m in enumerate(models)) + " END"
    epoch = f"CAST(? AS {_FLOAT[kind]}) + x * CAST(? AS {_FLOAT[kind]})"
    await fetch(
        conn,
        "INSERT INTO usage_event (task_number, phase, model, input_tokens, output_tokens, "
        "cache_read_tokens, cache_write_tokens, occurred_at) "
        f"SELECT 1 + (x - 1) / {events_per_task}, 'implement', {model_case}, "
        "1000 + x % 5000, 100 + x % 700, (x * 13) % 20000, x % 3 * 500, "
        f"{_timestamp_sql(kind, epoch)} FROM {_SERIES[kind]}",
        [start_epoch, seconds_apart, first, last],
    )


def expected_usage_totals(first: int, last: int) -> dict[str, int]:
    """What insert_usage(first, last) adds up to, per token type (computed in Python)."""
    totals = dict.fromkeys(("input", "output", "cache_read", "cache_write"), 0)
    for x in range(first, last + 1):
        totals["input"] += 1000 + x % 5000
        totals["output"] += 100 + x % 700
        totals["cache_read"] += (x * 13) % 20000
        totals["cache_write"] += x % 3 * 500
    return totals


# ----------------------------------------------------------------------------- HTTP


class Http:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:port; times every request."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.port = port
        self.timeout = timeout
        self.conn = http.client.HTTPConnection(benchlib.HOST, port, timeout=timeout)

    def request(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, bytes, float]:
        """(status, body, seconds) of one request; reconnects once if the server closed."""
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                self.conn.request(method, path, body=payload, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                return response.status, data, time.perf_counter() - started
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(benchlib.HOST, self.port, self.timeout)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        status, data, _ = self.request(method, path, body)
        if status != expect:
            raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data) if data else None

    def close(self) -> None:
        self.conn.close()


def timed_interleaved(
    http_client: Http, paths: dict[str, str], requests: int, warmup: int = 20
) -> dict[str, list[float]]:
    """GET each path ``requests`` times, interleaved (a, b, a, b, …); seconds per request."""
    for _ in range(warmup):
        for path in paths.values():
            http_client.request("GET", path)
    times: dict[str, list[float]] = {name: [] for name in paths}
    errors: dict[str, int] = dict.fromkeys(paths, 0)
    names = list(paths)
    for i in range(requests):
        for name in names if i % 2 == 0 else names[::-1]:
            status, _, seconds = http_client.request("GET", paths[name])
            if status != 200:
                errors[name] += 1
            times[name].append(seconds)
    for name, count in errors.items():
        if count:
            print(f"  ! {count} non-200 answers on {paths[name]}")
    return times


# ----------------------------------------------------------------------------- one process each

SUMMARY_PREFIX = "= "


def per_database(databases: str) -> bool:
    """With several databases, run this script once per database, each in its own process.

    Tortoise caches each model's INSERT statement by connection name ("default") for the
    life of the process (tortoise.backends.base.executor.EXECUTOR_CACHE), so a process that
    opened SQLite and then PostgreSQL would send SQLite's INSERT to PostgreSQL. Returns True
    when it did run the children (the caller is done), False when there is one database.
    Lines a child prints with SUMMARY_PREFIX are repeated at the end.
    """
    kinds = [k.strip() for k in databases.split(",") if k.strip()]
    if len(kinds) < 2:
        return False
    summary: list[str] = []
    for kind in kinds:
        argv = [sys.executable, sys.argv[0], *sys.argv[1:], "--db", kind]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, bufsize=1) as child:
            assert child.stdout is not None
            for line in child.stdout:
                print(line, end="", flush=True)
                if line.startswith(SUMMARY_PREFIX):
                    summary.append(line[len(SUMMARY_PREFIX) :].rstrip("\n"))
        if child.returncode != 0:
            print(f"! the {kind} run failed (exit status {child.returncode})")
    print("\n" + "=" * 100)
    print(benchlib.load_note())
    print("summary of all databases:")
    for line in summary:
        print("  " + line)
    return True


def make_events(batch: int, seed: int) -> list[dict[str, object]]:
    """A batch of usage events for POST /api/tasks/{id}/usage (usage_ingest.py, soak.py)."""
    at = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
    models = TOKEN_MODELS
    return [
        {
            "model": models[(seed + i) % len(models)],
            "phase": "implement",
            "input_tokens": 1000 + i,
            "output_tokens": 200 + i % 50,
            "cache_read_tokens": 5000 + i % 300,
            "cache_write_tokens": i % 3 * 100,
            "occurred_at": at,
        }
        for i in range(batch)
    ]
