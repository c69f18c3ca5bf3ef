"""Every read a user or the dashboard makes, alone, at 1,000 tasks against 100,000 tasks.

Two stores on the same database kind, seeded by bench/seed_large.py (``--small`` and
``--large`` tasks, ``--events-per-task`` usage events each: 100,000 and 10,000,000 by
default) and folded by orc's own aggregation, each served by ``orc serve --workers 1
--no-worker`` on a free loopback port. Then ``--rounds`` rounds, each timing ``--requests``
GETs of every read on one server and then on the other (interleaved within a server, the
servers alternating which goes first), so that the machine's load drifts equally over both.

Reads: the task list (page 1, a middle and the last page by ``page`` and by ``before``, each
status and weight filter),
one task, a task's usage, the cost summary, the cost time series (30 days), the metrics,
events since an id (the last 100), and /api/health for reference. Printed per read: p50 and p99
at each size, the ratio large/small, and the issue's targets (p99 <= 50 ms and <= 1.5x).

``--keep DIR`` keeps the seeded stores in DIR (PostgreSQL: a database per store, its URL in
DIR) and reuses them on the next run with the same DIR, after ``orc migrate --no-backup`` (so
a store seeded by older code gets the newer migrations, as an upgrade would); ``--seed-only``
stops after seeding; ``--drop`` removes them. ``--baseline DIR`` serves each store a second
time with an export of another version of orc first on ``PYTHONPATH`` (``git archive main``),
in the same rounds, so before and after see the same machine. ``--tail N`` adds N usage events
of the ``--tail-tasks`` newest tasks above the fold's watermark before the reads (what a busy
server has until the job worker's next fold; these servers run no worker) and removes them after.
``--cpu N`` then measures each endpoint's CPU: N requests of each read one after another, then N
task creations and N usage batches of 20 events (the soak's writes), and prints the API
process's user + system CPU per request (from /proc: the client's is left out, and so is
PostgreSQL's, while SQLite's runs in the API process and counts); the tasks and usage written
are removed after, as with ``--tail``.

Run: .venv/bin/python bench/reads_at_scale.py [--db sqlite,postgres] [--small 1000]
     [--large 100000] [--rounds 3] [--requests 30] [--keep DIR [--seed-only | --drop]]
     [--tail 2000] [--baseline /tmp/snap-main] [--cpu 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import benchlib
import orcbench
import seed_large

PAGE = 50
TARGET_P99_MS = 50.0
TARGET_RATIO = 1.5


def paths_for(tasks: int, last_event: int) -> dict[str, str]:
    middle = f"TASK-{max(1, tasks // 2):03d}"
    pages = -(-tasks // PAGE)
    paths = {
        "list page 1": f"/api/tasks?page=1&limit={PAGE}",
        "list middle page": f"/api/tasks?page={max(1, pages // 2)}&limit={PAGE}",
        "list last page": f"/api/tasks?page={pages}&limit={PAGE}",
        # Keyset pages (what the dashboard follows): a middle one and the oldest tasks.
        "list middle before=": f"/api/tasks?before=TASK-{max(1, tasks // 2):03d}&limit={PAGE}",
        "list last before=": f"/api/tasks?before=TASK-{PAGE + 1:03d}&limit={PAGE}",
        "list status=running": f"/api/tasks?status=running&limit={PAGE}",
        "list status=completed": f"/api/tasks?status=completed&limit={PAGE}",
        "list weight=large": f"/api/tasks?weight=large&limit={PAGE}",
        "one task": f"/api/tasks/{middle}",
        "task usage": f"/api/tasks/{middle}/usage",
        "cost summary": "/api/cost/summary",
        "cost timeseries": "/api/cost/timeseries?days=30",
        "metrics": "/api/metrics",
        "events since": f"/api/events?since={max(0, last_event - 100)}",
        "health": "/api/health",
    }
    return paths


async def last_event_id(store: orcbench.Store) -> int:
    from orc.db.sql import fetch

    async with orcbench.orc_database(store) as conn:
        rows = await fetch(conn, "SELECT MAX(id) AS m FROM event")
    return int(rows[0]["m"] or 0)


def seed_store(store: orcbench.Store, tasks: int, args: argparse.Namespace) -> None:
    async def go() -> None:
        async with orcbench.orc_database(store) as conn:
            await seed_large.seed(conn, store.kind, tasks, args.events_per_task, args.days)

    print(f"\n{store.label}: seeding {tasks:,} tasks", flush=True)
    asyncio.run(go())


@contextlib.contextmanager
def kept_store(
    kind: str, root: Path, pg_url: str, name: str, tasks: int, args: argparse.Namespace
) -> Iterator[orcbench.Store]:
    """A store under ``root`` that outlives this run: seeded once, migrated on every reuse."""
    data_dir = root / f"{kind}-{name}"
    saved = data_dir / "store.json"
    if saved.exists():
        store = orcbench.Store(kind, data_dir, json.loads(saved.read_text())["database_url"])
        print(f"\n{store.label}: reusing the {name} store in {data_dir} (orc migrate)", flush=True)
        orcbench.orc_cli(store, "migrate", "--no-backup", timeout=1800)
        # What the job worker does after an upgrade: fills the tables a migration added.
        orcbench.orc_cli(store, "fold-usage", timeout=1800)
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite://{data_dir / 'home' / 'orc.db'}"
        if kind == "postgres":
            database = f"orc_bench_kept_{name}_{secrets.token_hex(3)}"
            asyncio.run(orcbench._pg_admin(pg_url, f'CREATE DATABASE "{database}"'))
            url = orcbench._pg_url_for(pg_url, database)
        store = orcbench.Store(kind, data_dir, url)
        orcbench.orc_cli(store, "migrate")
        seed_store(store, tasks, args)
        saved.write_text(json.dumps({"database_url": url, "tasks": tasks}))
    yield store


def drop_kept(root: Path, pg_url: str) -> None:
    """Remove the stores ``--keep`` made under ``root`` (PostgreSQL databases included)."""
    for saved in root.glob("*/store.json"):
        url = json.loads(saved.read_text())["database_url"]
        if url.startswith("postgres"):
            database = url.split("/")[-1].split("?")[0]
            asyncio.run(
                orcbench._pg_admin(pg_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            )
        print(f"dropped {saved.parent}")
    shutil.rmtree(root, ignore_errors=True)


async def insert_tail(store: orcbench.Store, tasks: int, args: argparse.Namespace) -> int:
    """``--tail`` usage events of the newest ``--tail-tasks`` tasks, dated within the last
    minute and not folded (as a busy server has until the job worker's next fold); returns the
    watermark, above which they are."""
    from tortoise.transactions import in_transaction

    from orc.db.sql import fetch
    from orc.usage.rollups import read_watermark

    per_task = max(1, args.tail // args.tail_tasks)
    first = (tasks - args.tail_tasks) * per_task + 1
    last = tasks * per_task
    apart = 60.0 / (last - first + 1)
    async with orcbench.orc_database(store) as conn:
        watermark = await read_watermark(conn)
        await fetch(conn, "DELETE FROM usage_event WHERE id > ?", [watermark])
        async with in_transaction() as tx:
            await orcbench.insert_usage(
                tx,
                store.kind,
                first,
                last,
                time.time() - 61 - first * apart,
                apart,
                orcbench.TOKEN_MODELS,
                per_task,
            )
    print(f"  {store.label}: {last - first + 1:,} unfolded usage events of {args.tail_tasks} tasks")
    return watermark


async def delete_tail(store: orcbench.Store, watermark: int | None, tasks: int) -> None:
    """The kept store as it was seeded again: no usage above the watermark (--tail's), no task
    after the seeded ones, nor their events and usage (--cpu's; migration 0008's triggers
    keep the task counts)."""
    from orc.db.sql import fetch

    async with orcbench.orc_database(store) as conn:
        if watermark is not None:
            await fetch(conn, "DELETE FROM usage_event WHERE id > ?", [watermark])
        await fetch(conn, "DELETE FROM usage_event WHERE task_number > ?", [tasks])
        numbers = [
            row["number"]
            for row in await fetch(conn, "SELECT number FROM task WHERE number > ?", [tasks])
        ]
        for number in numbers:
            await fetch(conn, "DELETE FROM event WHERE task_id = ?", [f"TASK-{number:03d}"])
        await fetch(conn, "DELETE FROM task WHERE number > ?", [tasks])


def api_pid(server: benchlib.Server) -> int:
    """The API process under ``orc serve`` (``python -m orc _api``)."""
    for pid in server.descendant_pids():
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as fh:
            if b"_api" in fh.read().split(b"\0"):
                return pid
    raise RuntimeError(f"no API process under {server.name}")


def cpu_per_request(server: benchlib.Server, paths: dict[str, str], count: int) -> dict[str, float]:
    """The API process's CPU seconds per request of each read and of the soak's two writes,
    ``count`` requests each, one after another (so each figure is that endpoint's own)."""
    pid = api_pid(server)
    client = orcbench.Http(server.port)
    calls: dict[str, Any] = {
        read: (lambda path=path: client.request("GET", path)) for read, path in paths.items()
    }
    created: list[str] = []

    def create() -> tuple[int, bytes, float]:
        got = client.request("POST", "/api/tasks", {"title": "cpu", "weight": "small"})
        created.append(json.loads(got[1])["id"])
        return got

    def usage() -> tuple[int, bytes, float]:
        task = created[len(created) % max(1, len(created) - 1)] if created else "TASK-001"
        body = {"events": orcbench.make_events(20, len(created))}
        return client.request("POST", f"/api/tasks/{task}/usage", body)

    calls["create task"], calls["usage batch (20)"] = create, usage
    per_request = {}
    for name, call in calls.items():
        call()  # warm
        before = benchlib.cpu_seconds([pid])
        for _ in range(count):
            status = call()[0]
            if status not in (200, 201):
                raise RuntimeError(f"{name}: {status}")
        per_request[name] = (benchlib.cpu_seconds([pid]) - before) / count
    client.close()
    return per_request


def run_pair(small: orcbench.Store, large: orcbench.Store, args: argparse.Namespace) -> list[str]:
    sizes = {"small": (small, args.small), "large": (large, args.large)}
    # Each store served by this checkout's orc and, with --baseline, by that export of orc too,
    # all in the same rounds.
    versions = {"": None, " baseline": args.baseline} if args.baseline else {"": None}
    servers: dict[str, benchlib.Server] = {}
    times: dict[str, dict[str, list[float]]] = {}
    marks: dict[str, int] = {}
    try:
        paths: dict[str, dict[str, str]] = {}
        for name, (store, tasks) in sizes.items():
            if args.tail:
                marks[name] = asyncio.run(insert_tail(store, tasks, args))
            for version, pythonpath in versions.items():
                key = name + version
                paths[key] = paths_for(tasks, asyncio.run(last_event_id(store)))
                servers[key] = orcbench.start_orc(
                    store, tag=f"-{name}{version.strip()}", pythonpath=pythonpath
                )
                times[key] = {}
        clients = {name: orcbench.Http(server.port) for name, server in servers.items()}
        for name, client in clients.items():
            for read, path in paths[name].items():
                status, body, _ = client.request("GET", path)
                if status != 200:
                    raise RuntimeError(f"{name} {read}: {status} {body[:200]!r}")
        keys = list(servers)
        for round_ in range(args.rounds):
            for name in keys if round_ % 2 == 0 else keys[::-1]:
                got = orcbench.timed_interleaved(
                    clients[name], paths[name], args.requests, warmup=args.warmup
                )
                for read, values in got.items():
                    times[name].setdefault(read, []).extend(values)
        for client in clients.values():
            client.close()
        cpu = (
            {key: cpu_per_request(server, paths[key], args.cpu) for key, server in servers.items()}
            if args.cpu
            else {}
        )
    finally:
        for server in servers.values():
            server.stop()
        for name, (store, tasks) in sizes.items():
            asyncio.run(delete_tail(store, marks.get(name), tasks))
    tail = f", {args.tail:,} unfolded events" if args.tail else ""
    lines = []
    for version, pythonpath in versions.items():
        label = f"{small.label}{version}{tail}" + (f" ({pythonpath})" if pythonpath else "")
        pair = {"small": times["small" + version], "large": times["large" + version]}
        lines += report(label, pair, args)
        if cpu:
            lines += report_cpu(label, cpu["small" + version], cpu["large" + version], args)
    return lines


def report_cpu(
    label: str, small: dict[str, float], large: dict[str, float], args: argparse.Namespace
) -> list[str]:
    print(f"\n{label}: API CPU per request, {args.cpu} requests each ({benchlib.load_note()})")
    print(f"  {'endpoint':<22} {'small':>9} {'large':>9}")
    lines = []
    for name in small:
        print(f"  {name:<22} {small[name] * 1000:7.2f}ms {large[name] * 1000:7.2f}ms")
        lines.append(
            f"{label} CPU per request {name}: {small[name] * 1000:.2f} ms at {args.small:,} "
            f"tasks, {large[name] * 1000:.2f} ms at {args.large:,}"
        )
    return lines


def report(label: str, times: dict[str, dict[str, Any]], args: argparse.Namespace) -> list[str]:
    print(f"\n{label}: {args.small:,} vs {args.large:,} tasks ({benchlib.load_note()})")
    print(
        f"  {'read':<22} {'p50 small':>10} {'p50 large':>10} {'p99 small':>10} "
        f"{'p99 large':>10} {'p99 ratio':>9}  verdict"
    )
    lines = []
    failed = []
    for read in times["small"]:
        small, large = times["small"][read], times["large"][read]
        p50s, p50l = (orcbench.percentile(v, 50) * 1000 for v in (small, large))
        p99s, p99l = (orcbench.percentile(v, 99) * 1000 for v in (small, large))
        ratio = p99l / p99s
        ok = p99l <= TARGET_P99_MS and ratio <= TARGET_RATIO
        if read != "health" and not ok:
            failed.append(read)
        print(
            f"  {read:<22} {p50s:8.2f}ms {p50l:8.2f}ms {p99s:8.2f}ms {p99l:8.2f}ms "
            f"{ratio:8.2f}x  {'ok' if ok else 'NOT MET'}"
        )
        lines.append(
            f"{label} {read}: p50 {p50s:.2f} -> {p50l:.2f} ms, p99 {p99s:.2f} -> {p99l:.2f} ms "
            f"({ratio:.2f}x)"
        )
    verdict = "all met" if not failed else "not met: " + ", ".join(failed)
    lines.append(
        f"{label}: targets (p99 <= {TARGET_P99_MS:.0f} ms and <= {TARGET_RATIO}x): {verdict}"
    )
    return lines


def main() -> None:
    parser = seed_large.seed_arguments(__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=30, help="per read, server and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep the seeded stores here and reuse them")
    parser.add_argument("--drop", action="store_true", help="with --keep: drop the kept stores")
    parser.add_argument("--seed-only", action="store_true", help="with --keep: seed, no reads")
    parser.add_argument("--tail", type=int, default=0, help="unfolded usage events to add")
    parser.add_argument("--tail-tasks", type=int, default=100, help="of this many newest tasks")
    parser.add_argument("--cpu", type=int, default=0, help="requests per endpoint for CPU")
    parser.add_argument(
        "--baseline", type=Path, help="an export of another orc, served beside this one"
    )
    args = parser.parse_args()
    if args.drop and args.keep:
        drop_kept(args.keep, args.pg_url)
        return
    if orcbench.per_database(args.db):
        return
    print(benchlib.load_note())
    if args.keep:
        with (
            kept_store(args.db, args.keep, args.pg_url, "small", args.small, args) as small,
            kept_store(args.db, args.keep, args.pg_url, "large", args.large, args) as large,
        ):
            lines = [] if args.seed_only else run_pair(small, large, args)
        for line in lines:
            print(orcbench.SUMMARY_PREFIX + line)
        return
    tag = secrets.token_hex(3)
    with (
        benchlib.temp_dir("orc-bench-reads-") as root,
        orcbench.make_store(args.db, root, args.pg_url, f"small-{tag}") as small,
        orcbench.make_store(args.db, root, args.pg_url, f"large-{tag}") as large,
    ):
        seed_store(small, args.small, args)
        seed_store(large, args.large, args)
        lines = run_pair(small, large, args)
    for line in lines:
        print(orcbench.SUMMARY_PREFIX + line)


if __name__ == "__main__":
    main()
