"""Aggregation: ``fold_usage()`` on 1,000,000 usage events, then on 1,000 new ones.

For the chosen database (SQLite, PostgreSQL, or each in turn in its own process) two new
stores are migrated and filled directly in SQL:

- "big": 1,000,000 usage events over the last 30 days (10,000 tasks of 100 events, 8
  models; about 80,000 rollup rows);
- "small": the first 100,000 of the same events.

Timed, in this process through orc's own ``orc.usage.rollups.fold_usage`` (as the worker job
calls it, ``CHUNK_EVENTS`` ids per transaction): the first fold of each store (every event
is new), then ``--rounds`` incremental rounds: 1,000 new events (one minute of usage, now)
are inserted and folded, alternating the two stores. Target: the incremental fold does not
depend on the table size, so the ratio big/small of the median incremental fold should be
about 1. At the end the rollups and totals are checked against the sums of the events.

PostgreSQL gets an ANALYZE after the bulk load (autovacuum would do it soon after).

Run: .venv/bin/python bench/aggregation.py [--events 1000000] [--small 100000] [--db sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time

import benchlib
import orcbench

NEW_EVENTS = 1000
DAYS = 30
LOAD_CHUNK = 250_000


async def bulk_load(
    store: orcbench.Store, events: int, start_epoch: float, spacing_events: int
) -> float:
    """Insert events 1..events, ``DAYS`` days / ``spacing_events`` apart; return the seconds."""
    from orc.db.sql import fetch

    began = time.perf_counter()
    async with orcbench.orc_database(store) as conn:
        for first in range(1, events + 1, LOAD_CHUNK):
            last = min(events, first + LOAD_CHUNK - 1)
            await orcbench.insert_usage(
                conn,
                store.kind,
                first,
                last,
                start_epoch,
                DAYS * 86400 / spacing_events,
                orcbench.TOKEN_MODELS,
            )
        if store.kind == "postgres":
            await fetch(conn, "ANALYZE usage_event")
    return time.perf_counter() - began


async def timed_fold(store: orcbench.Store) -> tuple[float, int, int]:
    """(seconds, events folded, rollup rows) of one fold_usage() on the store."""
    from orc.db.sql import fetch
    from orc.usage.pricing import DEFAULT_PRICES, PriceList
    from orc.usage.rollups import fold_usage

    async with orcbench.orc_database(store) as conn:
        began = time.perf_counter()
        result = await fold_usage(PriceList(dict(DEFAULT_PRICES)))
        took = time.perf_counter() - began
        rows = await fetch(conn, "SELECT COUNT(*) AS n FROM usage_rollup")
    return took, result.events, int(rows[0]["n"])


async def add_new_events(store: orcbench.Store, first: int) -> None:
    """NEW_EVENTS events with ids from ``first``, one minute of usage ending now."""
    apart = 60 / NEW_EVENTS
    start = time.time() - 60 - first * apart
    async with orcbench.orc_database(store) as conn:
        await orcbench.insert_usage(
            conn, store.kind, first, first + NEW_EVENTS - 1, start, apart, orcbench.TOKEN_MODELS
        )


async def check_sums(store: orcbench.Store) -> str:
    """Compare usage_total and usage_rollup with the sums of usage_event."""
    from orc.db.sql import fetch

    cols = "SUM(input_tokens) AS i, SUM(output_tokens) AS o, SUM(cache_read_tokens) AS r, "
    cols += "SUM(cache_write_tokens) AS w"
    async with orcbench.orc_database(store) as conn:
        sums = {}
        for table, extra in (
            ("usage_event", ", COUNT(*) AS n"),
            ("usage_total", ", SUM(events) AS n"),
            ("usage_rollup", ", SUM(events) AS n"),
        ):
            row = (await fetch(conn, f"SELECT {cols}{extra} FROM {table}"))[0]
            sums[table] = tuple(int(row[k]) for k in ("n", "i", "o", "r", "w"))
    ok = sums["usage_event"] == sums["usage_total"] == sums["usage_rollup"]
    return ("OK" if ok else "MISMATCH") + f" ({sums['usage_event'][0]} events)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="size of the big table")
    parser.add_argument("--small", type=int, default=100_000, help="size of the small table")
    parser.add_argument("--rounds", type=int, default=7, help="incremental folds per store")
    parser.add_argument("--db", default="sqlite", help="sqlite, postgres or both (comma)")
    parser.add_argument("--pg-url", default=orcbench.DEFAULT_PG_URL)
    args = parser.parse_args()
    if orcbench.per_database(args.db):
        return
    from orc.usage.rollups import CHUNK_EVENTS

    print(
        f"fold_usage(): first fold of {args.events} and {args.small} events, then "
        f"{args.rounds} x {NEW_EVENTS} new events per store (CHUNK_EVENTS={CHUNK_EVENTS})"
    )
    print(benchlib.load_note())
    start_epoch = time.time() - DAYS * 86400 - 3600
    sizes = {"big": args.events, "small": args.small}
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(benchlib.temp_dir("orc-bench-fold-"))
        stores = {
            name: stack.enter_context(orcbench.make_store(args.db, root, args.pg_url, name))
            for name in sizes
        }
        label = stores["big"].label
        first: dict[str, float] = {}
        for name, store in stores.items():
            # The small table holds the first `small` events of the big one (same spacing).
            took = asyncio.run(bulk_load(store, sizes[name], start_epoch, args.events))
            print(f"{label} {name}: loaded {sizes[name]} events in {took:.1f}s (SQL)", flush=True)
            seconds, folded, rollups = asyncio.run(timed_fold(store))
            first[name] = seconds
            print(
                f"{label} {name}: first fold {seconds:.2f}s for {folded} events "
                f"({folded / seconds:,.0f} events/s), {rollups} rollup rows",
                flush=True,
            )
        incremental: dict[str, list[float]] = {name: [] for name in sizes}
        next_id = dict(sizes)
        for i in range(args.rounds):
            order = list(sizes) if i % 2 == 0 else list(sizes)[::-1]
            for name in order:
                asyncio.run(add_new_events(stores[name], next_id[name] + 1))
                next_id[name] += NEW_EVENTS
                seconds, folded, _ = asyncio.run(timed_fold(stores[name]))
                if folded != NEW_EVENTS:
                    print(f"  ! folded {folded} events, expected {NEW_EVENTS}")
                incremental[name].append(seconds)
            print(
                f"round {i + 1}: fold of {NEW_EVENTS} new events: "
                + ", ".join(f"{n} {incremental[n][-1] * 1000:.1f} ms" for n in sizes),
                flush=True,
            )
        checks = {name: asyncio.run(check_sums(store)) for name, store in stores.items()}
    print()
    print(benchlib.load_note())
    for name in sizes:
        print(f"{name}: totals and rollups equal the sums of the events: {checks[name]}")
    med = {n: statistics.median(v) for n, v in incremental.items()}
    lines = [
        f"{label}: first fold of {args.events:,} events {first['big']:.2f}s "
        f"({args.events / first['big']:,.0f} events/s); of {args.small:,}: {first['small']:.2f}s",
        f"{label}: fold of {NEW_EVENTS:,} new events, median (min-max) over {args.rounds}: "
        f"table {args.events:,}: {med['big'] * 1000:.1f} ms "
        f"({min(incremental['big']) * 1000:.1f}-{max(incremental['big']) * 1000:.1f}); "
        f"table {args.small:,}: {med['small'] * 1000:.1f} ms "
        f"({min(incremental['small']) * 1000:.1f}-{max(incremental['small']) * 1000:.1f}); "
        f"ratio big/small {med['big'] / med['small']:.2f} (target about 1)",
    ]
    for line in lines:
        print(orcbench.SUMMARY_PREFIX + line)


if __name__ == "__main__":
    main()
