"""Latency of ``GET /api/tasks?limit=100`` with 10,000 tasks, on SQLite and PostgreSQL.

For each database: a new store (``orc migrate``), 10,000 tasks inserted directly in SQL
(mixed weights and statuses; PostgreSQL then gets an ANALYZE, as autovacuum would do soon
after such a load), then ``orc serve --workers 1 --no-worker`` on it. One keep-alive client
sends the requests one after another (no concurrency: this is latency, not throughput),
interleaving the paths so that every path sees the same machine load:

- ``/api/tasks?limit=100``: the first page (the figure the issue asks for);
- ``/api/tasks?limit=100&page=100``: the last page (offset 9,900);
- ``/api/tasks?limit=100&status=running``: a filtered page;
- ``/api/health``: the baseline, same server, same client.

Prints p50/p99/max/mean per path and the ratio to /api/health.

Run: .venv/bin/python bench/tasks_list.py [--tasks 10000] [--requests 500] [--db sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import benchlib
import orcbench

PATHS = {
    "first page": "/api/tasks?limit=100",
    "last page": "/api/tasks?limit=100&page={last}",
    "status=running": "/api/tasks?limit=100&status=running",
    "health": "/api/health",
}


async def load(store: orcbench.Store, count: int) -> float:
    """Insert the tasks; return the seconds it took."""
    from orc.db.sql import fetch

    started = time.perf_counter()
    async with orcbench.orc_database(store) as conn:
        await orcbench.insert_tasks(conn, store.kind, count, time.time() - count - 60)
        if store.kind == "postgres":
            await fetch(conn, "ANALYZE task")
    return time.perf_counter() - started


def run_one(store: orcbench.Store, args: argparse.Namespace) -> dict[str, list[float]]:
    took = asyncio.run(load(store, args.tasks))
    print(f"{store.label}: inserted {args.tasks} tasks in {took:.2f}s (SQL)")
    server = orcbench.start_orc(store)
    try:
        client = orcbench.Http(server.port)
        first = client.json("GET", PATHS["first page"])
        if first["total"] != args.tasks or len(first["items"]) != 100:
            raise RuntimeError(f"unexpected page: total {first['total']}, {len(first['items'])}")
        last = -(-args.tasks // 100)
        paths = {name: path.format(last=last) for name, path in PATHS.items()}
        size = len(client.request("GET", paths["first page"])[1])
        print(f"  first page: {size} bytes of JSON; last page is page={last}")
        times = orcbench.timed_interleaved(client, paths, args.requests, warmup=args.warmup)
        client.close()
    finally:
        server.stop()
    base = orcbench.percentile(times["health"], 50)
    base99 = orcbench.percentile(times["health"], 99)
    for name, values in times.items():
        ratio = ""
        if name != "health":
            ratio = (
                f"  vs health: p50 x {orcbench.percentile(values, 50) / base:5.1f}"
                f", p99 x{orcbench.percentile(values, 99) / base99:.1f}"
            )
        print(f"  {name:>15}: {orcbench.ms_line(values)}{ratio}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=500, help="timed requests per path")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per path")
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--pg-url", default=orcbench.DEFAULT_PG_URL)
    args = parser.parse_args()
    if orcbench.per_database(args.db):
        return
    print(
        f"GET /api/tasks?limit=100 with {args.tasks} tasks: {args.requests} sequential requests "
        "per path on one keep-alive connection, paths interleaved; orc serve "
        + " ".join(orcbench.SERVE_ARGS)
    )
    print(benchlib.load_note())
    with (
        benchlib.temp_dir("orc-bench-tasks-") as root,
        orcbench.make_store(args.db, root, args.pg_url) as store,
    ):
        times = run_one(store, args)
        label = store.label
    print()
    print(benchlib.load_note())
    for name in ("first page", "last page"):
        tasks, health = times[name], times["health"]
        print(
            f"{orcbench.SUMMARY_PREFIX}{label:>10} {name}: "
            f"p50 {orcbench.percentile(tasks, 50) * 1000:6.2f} ms, "
            f"p99 {orcbench.percentile(tasks, 99) * 1000:6.2f} ms; health p50 "
            f"{orcbench.percentile(health, 50) * 1000:5.2f} ms, p99 "
            f"{orcbench.percentile(health, 99) * 1000:5.2f} ms"
        )


if __name__ == "__main__":
    main()
