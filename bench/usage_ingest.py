"""Usage ingest: events/s through ``POST /api/tasks/{id}/usage``, on SQLite and PostgreSQL.

For each database: a new store, ``orc serve --workers 1 --no-worker``, one task per client
(created through the API). For each batch size (default 1, 100 and 1000 events per request;
1000 is the API's maximum), ``--clients`` threads (default 4), each with its own keep-alive
connection to its own task, send their requests as fast as the server answers; the request
bodies are built before the clock starts (each event names one of 8 models, a phase, four
token counts and an ``occurred_at``), so the clients spend little CPU. Reported: events/s and
requests/s over the wall time of the run, request latency p50/p99, and the CPU time of the
orc processes per 1,000 events (the database server's own CPU is not counted).

Baselines, same run, the same number of events in the same batch sizes, one caller in this
process: orc's own ``orc.usage.recording.record_usage`` (no HTTP, no JSON, no validation: the ratio
API/in-process shows what those cost), and a plain ``INSERT`` of the same rows through the
same driver, one transaction per batch (no ORM objects, no task check, no outbox event: the
ratio shows what orc's write path costs on top of the database). Every event written is
counted at the end (rows in usage_event must equal the events sent).

Run: .venv/bin/python bench/usage_ingest.py [--clients 4] [--batches 1,100,1000] [--db ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from datetime import datetime

import benchlib
import orcbench

# Requests per client for each batch size (so that each run takes a few seconds).
DEFAULT_REQUESTS = {1: 250, 100: 100, 1000: 25}


def body_for(batch: int, seed: int) -> bytes:
    events = orcbench.make_events(batch, seed)
    return json.dumps(events[0] if batch == 1 else {"events": events}).encode()


def run_api(
    port: int, tasks: list[str], batch: int, requests: int, server_pids: list[int]
) -> dict[str, float]:
    """All clients at once; events/s, requests/s, latency, server CPU per 1000 events."""
    bodies = [body_for(batch, seed) for seed in range(len(tasks))]
    clients = [orcbench.Http(port, timeout=120) for _ in tasks]
    latencies: list[list[float]] = [[] for _ in tasks]
    failures: list[str] = []
    start = threading.Barrier(len(tasks) + 1)

    def client(i: int) -> None:
        path = f"/api/tasks/{tasks[i]}/usage"
        start.wait()
        for _ in range(requests):
            status, data, seconds = clients[i].request("POST", path, raw=bodies[i])
            if status != 201:
                failures.append(f"{status} {data[:200]!r}")
            latencies[i].append(seconds)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(tasks))]
    for thread in threads:
        thread.start()
    cpu_before = benchlib.cpu_seconds(server_pids)
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    cpu = benchlib.cpu_seconds(server_pids) - cpu_before
    for c in clients:
        c.close()
    if failures:
        print(f"  ! {len(failures)} failed requests, first: {failures[0]}")
    all_lat = [s for per in latencies for s in per]
    events = batch * requests * len(tasks)
    return {
        "events": events,
        "wall": wall,
        "events_per_s": events / wall,
        "requests_per_s": len(all_lat) / wall,
        "p50_ms": orcbench.percentile(all_lat, 50) * 1000,
        "p99_ms": orcbench.percentile(all_lat, 99) * 1000,
        "cpu_ms_per_1000": cpu / events * 1e6,
        "failures": len(failures),
    }


async def run_in_process(
    store: orcbench.Store, task_number: int, batch: int, total_events: int
) -> dict[str, float]:
    """Events/s of record_usage (orc.usage.recording) and of a plain INSERT, same batches."""
    from tortoise.transactions import in_transaction

    from orc.db.sql import placeholders
    from orc.usage.recording import UsageRecord, record_usage

    events = orcbench.make_events(batch, 0)
    records = [
        UsageRecord(
            model=str(e["model"]),
            phase=str(e["phase"]),
            occurred_at=datetime.fromisoformat(str(e["occurred_at"])),
            input_tokens=int(e["input_tokens"]),  # type: ignore[call-overload]
            output_tokens=int(e["output_tokens"]),  # type: ignore[call-overload]
            cache_read_tokens=int(e["cache_read_tokens"]),  # type: ignore[call-overload]
            cache_write_tokens=int(e["cache_write_tokens"]),  # type: ignore[call-overload]
        )
        for e in events
    ]
    result = {"events": float(total_events)}
    async with orcbench.orc_database(store) as conn:
        began = time.perf_counter()
        for _ in range(total_events // batch):
            await record_usage(task_number, records)
        result["orc_per_s"] = total_events / (time.perf_counter() - began)
        sql = placeholders(
            conn,
            "INSERT INTO usage_event (task_number, phase, model, input_tokens, output_tokens, "
            "cache_read_tokens, cache_write_tokens, occurred_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        rows = [
            [
                task_number,
                r.phase,
                r.model,
                r.input_tokens,
                r.output_tokens,
                r.cache_read_tokens,
                r.cache_write_tokens,
                r.occurred_at if store.kind == "postgres" else str(r.occurred_at),
            ]
            for r in records
        ]
        began = time.perf_counter()
        for _ in range(total_events // batch):
            async with in_transaction() as tx:
                await tx.execute_many(sql, rows)
        result["raw_per_s"] = total_events / (time.perf_counter() - began)
    return result


async def count_events(store: orcbench.Store) -> int:
    from orc.db.sql import fetch

    async with orcbench.orc_database(store) as conn:
        rows = await fetch(conn, "SELECT COUNT(*) AS n FROM usage_event")
    return int(rows[0]["n"])


def run_store(store: orcbench.Store, args: argparse.Namespace) -> list[str]:
    print(f"\n{store.label}")
    server = orcbench.start_orc(store)
    lines = []
    sent = 0
    try:
        client = orcbench.Http(server.port)
        tasks = [
            client.json("POST", "/api/tasks", {"title": f"ingest {i}"}, expect=201)["id"]
            for i in range(args.clients + 1)
        ]
        client.close()
        api_tasks, baseline_task = tasks[:-1], int(tasks[-1].split("-")[1])
        pids = [server.pid, *server.descendant_pids()]
        # Warm-up: one small batch per client (connections, caches, code paths).
        run_api(server.port, api_tasks, 10, 2, pids)
        sent += 10 * 2 * len(api_tasks)
        for batch in args.batches:
            requests = args.requests or DEFAULT_REQUESTS.get(batch, max(1, 25_000 // batch))
            r = run_api(server.port, api_tasks, batch, requests, pids)
            sent += int(r["events"]) - int(r["failures"]) * batch
            base = asyncio.run(run_in_process(store, baseline_task, batch, int(r["events"])))
            sent += 2 * int(base["events"])
            line = (
                f"batch {batch:>4} x {len(api_tasks)} clients: {r['events_per_s']:8.0f} events/s "
                f"({r['requests_per_s']:6.1f} req/s, {r['events']:.0f} events in "
                f"{r['wall']:.2f}s), request p50 {r['p50_ms']:7.2f} ms p99 {r['p99_ms']:7.2f} ms, "
                f"orc CPU {r['cpu_ms_per_1000']:6.1f} ms/1000 events | in-process: "
                f"record_usage {base['orc_per_s']:6.0f} events/s (API/in-process "
                f"{r['events_per_s'] / base['orc_per_s']:.2f}), plain INSERT "
                f"{base['raw_per_s']:6.0f} events/s (API/plain "
                f"{r['events_per_s'] / base['raw_per_s']:.2f})"
            )
            print("  " + line, flush=True)
            lines.append(f"{store.label:>10} {line}")
    finally:
        server.stop()
    stored = asyncio.run(count_events(store))
    check = "OK" if stored == sent else f"MISMATCH (sent {sent})"
    print(f"  usage_event rows: {stored}: {check}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batches", default="1,100,1000", help="events per request")
    parser.add_argument("--requests", type=int, default=0, help="requests per client (0: auto)")
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--pg-url", default=orcbench.DEFAULT_PG_URL)
    args = parser.parse_args()
    if orcbench.per_database(args.db):
        return
    args.batches = [int(b) for b in args.batches.split(",")]
    print(
        f"POST /api/tasks/{{id}}/usage: {args.clients} concurrent clients, batches of "
        f"{args.batches} events; orc serve " + " ".join(orcbench.SERVE_ARGS)
    )
    print(benchlib.load_note())
    with (
        benchlib.temp_dir("orc-bench-ingest-") as root,
        orcbench.make_store(args.db, root, args.pg_url) as store,
    ):
        lines = run_store(store, args)
    print()
    print(benchlib.load_note())
    for line in lines:
        print(orcbench.SUMMARY_PREFIX + line)


if __name__ == "__main__":
    main()
