"""``/api/metrics`` render time with 50 models' usage recorded (folded and not folded).

For the chosen database (SQLite, PostgreSQL, or each in turn in its own process): a new
store with ``--events`` usage events (default 100,000 over the last 30 days) spread evenly
over 50 models (25 priced by prefix, e.g. ``claude-sonnet-4-5-bench-03``, and 25 unknown,
so unpriced), inserted directly in SQL (PostgreSQL then gets an ANALYZE, as autovacuum would do soon
after: without statistics its planner scans the whole table for the scrape's query of the
unfolded tail, ``id > watermark``), then ``orc serve --workers 1 --no-worker``. Three
cases, measured in this order on the same server:

- not folded: every event is in the tail that a scrape sums itself (no fold has run, e.g.
  no worker yet): the worst case;
- folded: ``orc fold-usage`` (another process) folded everything, the tail is empty;
- folded + tail: 1,000 more events after that fold (a few seconds of heavy use between two
  folds of the worker, every 5 s): the usual case.

Each case: ``--scrapes`` (default 200) GET /api/metrics, one after another on one keep-alive
connection, interleaved with as many GET /api/health (the baseline, same server), after a
short warm-up. Reported: median, p99 and max latency seen by the client (the render time
plus one local HTTP round trip, which /api/health shows), the body size, and a check that
the exposition's orc_tokens_used_total per type equals the sums of the usage events and
that all 50 models have a cost series. Target: < 50 ms.

Run: .venv/bin/python bench/metrics_render.py [--events 100000] [--scrapes 200] [--db sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import benchlib
import orcbench

TARGET_MS = 50.0
MODELS = [f"claude-sonnet-4-5-bench-{i:02d}" for i in range(25)] + [
    f"bench-unpriced-model-{i:02d}" for i in range(25)
]
TAIL_EVENTS = 1000
DAYS = 30


async def load(store: orcbench.Store, first: int, last: int, start: float, apart: float) -> None:
    from orc.db.sql import fetch

    async with orcbench.orc_database(store) as conn:
        await orcbench.insert_usage(conn, store.kind, first, last, start, apart, MODELS)
        if store.kind == "postgres":
            # As autovacuum would soon after such a load. Without statistics the planner
            # reads the scrape's tail query (id > watermark) as a sequential scan.
            await fetch(conn, "ANALYZE usage_event")


async def event_sums(store: orcbench.Store) -> dict[str, int]:
    from orc.db.sql import fetch

    async with orcbench.orc_database(store) as conn:
        row = (
            await fetch(
                conn,
                "SELECT SUM(input_tokens) AS input, SUM(output_tokens) AS output, "
                "SUM(cache_read_tokens) AS cache_read, SUM(cache_write_tokens) AS cache_write "
                "FROM usage_event",
            )
        )[0]
    return {k: int(row[k]) for k in ("input", "output", "cache_read", "cache_write")}


def check_exposition(body: bytes, expected: dict[str, int]) -> str:
    from prometheus_client.parser import text_string_to_metric_families

    tokens: dict[str, float] = dict.fromkeys(expected, 0.0)
    models_with_cost: set[str] = set()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "orc_tokens_used_total":
                tokens[sample.labels["type"]] += sample.value
            elif sample.name == "orc_cost_usd_total":
                models_with_cost.add(sample.labels["model"])
    problems = [
        f"{kind}: {tokens[kind]:.0f} != {expected[kind]}"
        for kind in expected
        if round(tokens[kind]) != expected[kind]
    ]
    if models_with_cost != set(MODELS):
        problems.append(f"{len(models_with_cost)} models with a cost series, not {len(MODELS)}")
    return "OK" if not problems else "MISMATCH: " + "; ".join(problems)


def measure(
    client: orcbench.Http, case: str, scrapes: int, expected: dict[str, int]
) -> tuple[str, list[float], list[float]]:
    status, body, _ = client.request("GET", "/api/metrics")
    if status != 200:
        raise RuntimeError(f"/api/metrics answered {status}: {body[:300]!r}")
    check = check_exposition(body, expected)
    times = orcbench.timed_interleaved(
        client, {"metrics": "/api/metrics", "health": "/api/health"}, scrapes, warmup=10
    )
    metrics, health = times["metrics"], times["health"]
    median = orcbench.percentile(metrics, 50) * 1000
    p99 = orcbench.percentile(metrics, 99) * 1000
    verdict = "FAIL"
    if median < TARGET_MS:
        verdict = "PASS" if p99 < TARGET_MS else "PASS on the median, not on p99"
    line = (
        f"{case:>16}: metrics {orcbench.ms_line(metrics)}; health p50 "
        f"{orcbench.percentile(health, 50) * 1000:.2f} ms p99 "
        f"{orcbench.percentile(health, 99) * 1000:.2f} ms; {len(body)} bytes; sums {check}; "
        f"target < {TARGET_MS:g} ms: {verdict}"
    )
    print("  " + line, flush=True)
    return line, metrics, health


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--pg-url", default=orcbench.DEFAULT_PG_URL)
    args = parser.parse_args()
    if orcbench.per_database(args.db):
        return
    print(
        f"/api/metrics with {len(MODELS)} models, {args.events} usage events; {args.scrapes} "
        "scrapes per case interleaved with /api/health; orc serve " + " ".join(orcbench.SERVE_ARGS)
    )
    print(benchlib.load_note())
    lines = []
    with (
        benchlib.temp_dir("orc-bench-metrics-") as root,
        orcbench.make_store(args.db, root, args.pg_url) as store,
    ):
        start = time.time() - DAYS * 86400 - 3600
        apart = DAYS * 86400 / args.events
        asyncio.run(load(store, 1, args.events, start, apart))
        server = orcbench.start_orc(store)
        try:
            client = orcbench.Http(server.port)
            expected = asyncio.run(event_sums(store))
            lines.append(measure(client, "not folded", args.scrapes, expected)[0])
            began = time.perf_counter()
            folded = orcbench.orc_cli(store, "fold-usage").strip()
            print(f"  orc fold-usage: {folded} ({time.perf_counter() - began:.1f}s with start-up)")
            lines.append(measure(client, "folded", args.scrapes, expected)[0])
            first = args.events + 1
            tail_start = time.time() - 120 - first * (60 / TAIL_EVENTS)
            asyncio.run(load(store, first, first + TAIL_EVENTS - 1, tail_start, 60 / TAIL_EVENTS))
            expected = asyncio.run(event_sums(store))
            lines.append(measure(client, "folded + tail", args.scrapes, expected)[0])
            client.close()
        finally:
            server.stop()
    print()
    print(benchlib.load_note())
    for line in lines:
        print(f"{orcbench.SUMMARY_PREFIX}{store.label} {line.strip()}")


if __name__ == "__main__":
    main()
