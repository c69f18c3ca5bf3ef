"""WebSocket fan-out: one event to 1,000 clients of ``/api/ws``, against ``websockets.broadcast``.

Servers (each in its own process): ``orc serve --workers 1 --no-worker`` on a new store, and
the baseline, this script with ``--baseline-server``: a bare ``websockets.asyncio.server``
(the version orc's venv has, on uvloop like Sanic when uvloop is installed) that answers
``subscribe`` with ``subscribed`` and, when its control connection sends ``go <marker>``,
sends one message of the size of orc's task_created event to every subscriber with
``websockets.broadcast()``.

This process (uvloop when installed; its fd limit raised with resource.setrlimit) opens
``--clients`` connections to each server (compression off and no client pings, for both),
subscribes each to ``*`` and keeps one reader task per connection, which notes the time
(time.perf_counter) at which a message carrying the round's marker arrives. Each round
(``--rounds``, alternating which server goes first):

- orc: ``POST /api/tasks`` with the marker in the title (from a thread, one keep-alive
  connection); the task_created event travels through the outbox and orc's tailer (SQLite:
  polled every 0.1 s; PostgreSQL: LISTEN/NOTIFY wake-up) to every client;
- baseline: ``go <marker>`` on the control connection.

Per client: latency from the trigger (the POST being sent / the control message), for orc
also from the POST's response (what the outbox and the tailer add after the commit), and the
spread (arrival minus the round's first arrival: the fan-out itself). Reported per round and
over all rounds, with the ratio orc p99 / baseline p99 (target ≤ 2) and whether every client
got every event. The baseline server also reports how long its broadcast() call took.

All clients run in this one process, so their own processing (roughly 20 us per message
here) is part of every figure, equally for both servers: when the baseline writes all its
frames at once, the spread of its arrivals is mostly this process reading them.

``--trace`` (a diagnostic) runs orc's API process (``python -m orc _api``, what ``orc
serve`` starts) from this script with time stamps added around the outbox tailer's query,
the hub's publish, each write of an event to a client and the session_update that follows
(patched in that process only; orc's code is not changed), and prints where the time goes
between the POST's response and the last delivery: poll wait, query, publish, writes.

Run: .venv/bin/python bench/ws_fanout.py [--clients 1000] [--rounds 10] [--db sqlite,postgres]
     [--trace]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import benchlib
import orcbench

TARGET_RATIO = 2.0
CONNECT_CONCURRENCY = 50
ROUND_TIMEOUT = 15.0
SETTLE_SECONDS = 1.2  # orc sends at most one session_update per second after an event


def use_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def raise_fd_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ----------------------------------------------------------------------------- baseline server


def baseline_message(marker: str, event_id: int) -> str:
    """A message shaped and sized like orc's task_created event."""
    now = datetime.now(UTC).isoformat()
    task_id = f"TASK-{event_id:03d}"
    return json.dumps(
        {
            "type": "event",
            "id": event_id,
            "event_type": "task_created",
            "task_id": task_id,
            "data": {
                "id": task_id,
                "title": marker,
                "description": "",
                "weight": "medium",
                "status": "created",
                "current_phase": None,
                "created_by": "",
                "created_at": now,
                "updated_at": now,
            },
            "created_at": now,
        }
    )


async def serve_baseline(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.http11 import Request, Response

    subscribers: set[ServerConnection] = set()
    counter = 0

    def health(connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/api/health":
            return connection.respond(HTTPStatus.OK, '{"status":"ok"}\n')
        return None

    async def handler(ws: ServerConnection) -> None:
        nonlocal counter
        try:
            async for raw in ws:
                text = raw if isinstance(raw, str) else raw.decode()
                if text.startswith("go "):
                    counter += 1
                    began = time.perf_counter()
                    broadcast(subscribers, baseline_message(text[3:], counter))
                    took = time.perf_counter() - began
                    await ws.send(json.dumps({"broadcast_seconds": took}))
                elif json.loads(text).get("type") == "subscribe":
                    subscribers.add(ws)
                    await ws.send(json.dumps({"type": "subscribed", "task_id": "*"}))
        finally:
            subscribers.discard(ws)

    async with serve(
        handler, benchlib.HOST, port, process_request=health, compression=None, backlog=1024
    ) as server:
        await server.serve_forever()


# ----------------------------------------------------------------------------- --trace

TRACE_ENV = "ORC_BENCH_TRACE_FILE"


def run_traced_api() -> None:
    """orc's API process (``python -m orc _api``) with orc.outbox.live and /api/ws timed (--trace).

    The patches live in this process only and only add time stamps (time.perf_counter, the
    same clock as the client's): when the tailer's query that returned events began, when
    the hub starts and ends publishing a message to its subscribers, when each event has
    been written to a client (straight to its socket, or by its pump), and the session_update
    that follows.
    """
    import threading

    import orc.api.event_routes as api_events
    import orc.outbox.live as live
    from orc.cli.main import cli

    out = open(os.environ[TRACE_ENV], "a")  # noqa: SIM115 - open for the process's life
    lock = threading.Lock()

    def mark(text: str, at: float | None = None) -> None:
        with lock:
            out.write(f"{time.perf_counter() if at is None else at:.6f} {text}\n")

    def flusher() -> None:
        while True:
            time.sleep(0.2)
            with lock:
                out.flush()

    threading.Thread(target=flusher, daemon=True).start()
    events_since, publish = live.events_since, live.Hub.publish
    direct_writer, pump = api_events._direct_writer, api_events._pump
    session_update = live.OutboxTailer._publish_session_update

    async def traced_events_since(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        events = await events_since(*args, **kwargs)
        if events:
            mark(f"query {len(events)}", began)
        return events

    def traced_publish(self: Any, message: dict[str, Any]) -> None:
        mark(f"publish_start {message.get('event_type') or message['type']}")
        publish(self, message)
        mark("publish_end")

    def traced_direct_writer(ws: Any) -> Any:
        write = direct_writer(ws)
        if write is None:
            return None

        def traced_write(message: Any) -> bool:
            written = bool(write(message))
            if written and message.kind == "event":
                mark("sent")
            return written

        return traced_write

    class TracedSocket:
        def __init__(self, ws: Any) -> None:
            self.ws = ws

        async def send(self, text: str) -> None:
            await self.ws.send(text)
            if text.startswith('{"type": "event"'):
                mark("sent")

    async def traced_pump(ws: Any, subscriber: Any) -> None:
        await pump(TracedSocket(ws), subscriber)

    async def traced_session_update(self: Any) -> None:
        mark("session_update_start")
        await session_update(self)
        mark("session_update_end")

    live.events_since = traced_events_since  # type: ignore[assignment]
    live.Hub.publish = traced_publish  # type: ignore[method-assign]
    api_events._direct_writer = traced_direct_writer
    api_events._pump = traced_pump
    live.OutboxTailer._publish_session_update = traced_session_update  # type: ignore[method-assign]
    cli(["_api"])


def start_traced_orc(store: orcbench.Store, trace: Path) -> benchlib.Server:
    port = benchlib.free_port()
    env = store.env
    env.update({"ORC_HOST": benchlib.HOST, "ORC_PORT": str(port), TRACE_ENV: str(trace)})
    argv = [benchlib.python_exe(), __file__, "--traced-api"]
    server = benchlib.Server("orc _api (traced)", argv, env, port, store.data_dir / "traced.log")
    server.cwd = store.data_dir
    server.start()
    server.wait_healthy()
    return server


def trace_breakdown(rounds: list[Round], trace: Path) -> list[str]:
    """Per orc round, where the time went on the server (from the trace), in ms."""
    marks = []
    for line in trace.read_text().splitlines():
        at, _, what = line.partition(" ")
        marks.append((float(at), what))
    marks.sort()
    parts: dict[str, list[float]] = {
        "POST answered -> tailer query began (poll wait; < 0: began first)": [],
        "query began -> publish to the hub": [],
        "publish (direct writes, queues)": [],
        "publish -> first write to a client": [],
        "publish -> last write to a client": [],
        "publish -> first arrival at a client": [],
        "publish -> last arrival at a client": [],
        "publish -> session_update published": [],
    }
    keys = list(parts)
    triggers = sorted(r.trigger for r in rounds)
    for r in (r for r in rounds if r.server == "orc" and r.arrivals and r.response):
        later = [t for t in triggers if t > r.trigger]
        until = min(later[0] if later else math.inf, r.trigger + ROUND_TIMEOUT)
        window = [(t, w) for t, w in marks if r.trigger <= t < until]
        start = next((t for t, w in window if w == "publish_start task_created"), None)
        query = [t for t, w in window if w.startswith("query") and start and t <= start]
        if start is None or not query:
            continue
        end = next(t for t, w in window if w == "publish_end" and t >= start)
        sent = [t for t, w in window if w == "sent" and t >= start]
        session = [t for t, w in window if w == "publish_start session_update" and t >= start]
        assert r.response is not None
        values = [
            query[-1] - r.response,
            start - query[-1],
            end - start,
            min(sent) - start if sent else math.nan,
            max(sent) - start if sent else math.nan,
            min(r.arrivals) - start,
            max(r.arrivals) - start,
            session[0] - start if session else math.nan,
        ]
        for key, value in zip(keys, values, strict=True):
            parts[key].append(value * 1000)
    lines = []
    for key, values in parts.items():
        if values:
            lines.append(
                f"trace: {key}: median {statistics.median(values):6.1f} ms "
                f"(min {min(values):6.1f}, max {max(values):6.1f}, n={len(values)})"
            )
    return lines


# ----------------------------------------------------------------------------- clients


class Fleet:
    """``n`` subscribed connections to one server and the arrival times of one round."""

    def __init__(self, name: str, url: str, n: int) -> None:
        self.name = name
        self.url = url
        self.n = n
        self.connections: list[Any] = []
        self.readers: list[asyncio.Task[None]] = []
        self.marker: str | None = None
        self.arrivals: list[float | None] = [None] * n
        self.count = 0
        self.done = asyncio.Event()
        self.closed = 0

    async def connect(self) -> float:
        from websockets.asyncio.client import connect

        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        subscribe = json.dumps({"type": "subscribe", "task_id": "*"})

        async def one(i: int) -> Any:
            async with gate:
                ws = await connect(
                    self.url, compression=None, proxy=None, ping_interval=None, open_timeout=60
                )
                await ws.send(subscribe)
                while '"subscribed"' not in await ws.recv():
                    pass
                return ws

        began = time.perf_counter()
        self.connections = list(await asyncio.gather(*(one(i) for i in range(self.n))))
        self.readers = [
            asyncio.create_task(self._read(i, ws)) for i, ws in enumerate(self.connections)
        ]
        return time.perf_counter() - began

    async def _read(self, i: int, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                at = time.perf_counter()
                marker = self.marker
                if marker is not None and marker in message and self.arrivals[i] is None:
                    self.arrivals[i] = at
                    self.count += 1
                    if self.count == self.n:
                        self.done.set()
        self.closed += 1

    def arm(self, marker: str) -> None:
        self.marker = marker
        self.arrivals = [None] * self.n
        self.count = 0
        self.done.clear()

    async def wait(self) -> list[float]:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), ROUND_TIMEOUT)
        self.marker = None
        return [a for a in self.arrivals if a is not None]

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in self.connections), return_exceptions=True)


# ----------------------------------------------------------------------------- rounds


@dataclass
class Round:
    server: str
    trigger: float  # the POST sent / the control message sent
    arrivals: list[float]
    expected: int
    response: float | None = None  # orc: the POST's response received
    broadcast: float | None = None  # baseline: how long the broadcast() call took

    def from_trigger(self) -> list[float]:
        return [a - self.trigger for a in self.arrivals]

    def from_response(self) -> list[float]:
        assert self.response is not None
        return [a - self.response for a in self.arrivals]

    def spread(self) -> list[float]:
        first = min(self.arrivals, default=0.0)
        return [a - first for a in self.arrivals]

    def line(self) -> str:
        if not self.arrivals:
            return f"{self.server:>8}: delivered 0/{self.expected}"
        ms = orcbench.percentile
        trig = self.from_trigger()
        text = (
            f"{self.server:>8}: delivered {len(self.arrivals)}/{self.expected}; from trigger "
            f"p50 {ms(trig, 50) * 1000:6.1f} p99 {ms(trig, 99) * 1000:6.1f} "
            f"max {max(trig) * 1000:6.1f} ms; spread p99 {ms(self.spread(), 99) * 1000:5.1f} ms"
        )
        if self.broadcast is not None:
            text += f"; broadcast() call {self.broadcast * 1000:.1f} ms (in the server)"
        if self.response is not None:
            resp = self.from_response()
            text += (
                f"; POST answered after {(self.response - self.trigger) * 1000:5.1f} ms, "
                f"first delivery {min(resp) * 1000:6.1f} ms after it, p99 "
                f"{ms(resp, 99) * 1000:6.1f} ms"
            )
        return text


async def orc_round(fleet: Fleet, client: orcbench.Http, marker: str) -> Round:
    def post() -> tuple[float, float, int]:
        sent = time.perf_counter()
        status, _, _ = client.request("POST", "/api/tasks", {"title": marker})
        return sent, time.perf_counter(), status

    fleet.arm(marker)
    poster = asyncio.create_task(asyncio.to_thread(post))
    arrivals = await fleet.wait()
    sent, answered, status = await poster
    if status != 201:
        print(f"  ! POST /api/tasks answered {status}")
    return Round("orc", sent, arrivals, fleet.n, answered)


async def baseline_round(fleet: Fleet, control: Any, marker: str) -> Round:
    fleet.arm(marker)
    sent = time.perf_counter()
    await control.send("go " + marker)
    arrivals = await fleet.wait()
    took = json.loads(await control.recv())["broadcast_seconds"]
    return Round("baseline", sent, arrivals, fleet.n, broadcast=took)


async def run_rounds(orc_port: int, base_port: int, args: argparse.Namespace) -> list[Round]:
    from websockets.asyncio.client import connect

    fleets = {
        "orc": Fleet("orc", f"ws://{benchlib.HOST}:{orc_port}/api/ws", args.clients),
        "baseline": Fleet("baseline", f"ws://{benchlib.HOST}:{base_port}/", args.clients),
    }
    for fleet in fleets.values():
        took = await fleet.connect()
        print(f"{fleet.name}: {fleet.n} clients connected and subscribed in {took:.1f}s")
    control = await connect(f"ws://{benchlib.HOST}:{base_port}/", compression=None, proxy=None)
    client = orcbench.Http(orc_port)
    tag = secrets.token_hex(3)
    triggers: dict[str, Callable[[str], Any]] = {
        "orc": lambda marker: orc_round(fleets["orc"], client, marker),
        "baseline": lambda marker: baseline_round(fleets["baseline"], control, marker),
    }
    rounds: list[Round] = []
    try:
        await asyncio.sleep(SETTLE_SECONDS)
        for name, trigger in triggers.items():  # warm-up, not counted
            warm = await trigger(f"fanout-{tag}-warmup-{name}")
            print(f"warm-up {warm.line()}")
            await asyncio.sleep(SETTLE_SECONDS)
        for i in range(args.rounds):
            order = list(triggers) if i % 2 == 0 else list(triggers)[::-1]
            for name in order:
                result = await triggers[name](f"fanout-{tag}-round-{i + 1}-{name}")
                rounds.append(result)
                print(f"round {i + 1:>2} {result.line()}", flush=True)
                await asyncio.sleep(SETTLE_SECONDS)
    finally:
        client.close()
        await control.close()
        for fleet in fleets.values():
            if fleet.closed:
                print(f"  ! {fleet.closed} {fleet.name} connections were closed by the server")
            await fleet.close()
    return rounds


def report(label: str, rounds: list[Round], clients: int) -> None:
    orc = [r for r in rounds if r.server == "orc"]
    base = [r for r in rounds if r.server == "baseline"]

    def pooled(rs: list[Round], what: str) -> list[float]:
        return [v for r in rs for v in getattr(r, what)()]

    def complete(rs: list[Round]) -> str:
        full = sum(len(r.arrivals) == r.expected for r in rs)
        return f"{full}/{len(rs)} rounds delivered to all {clients} clients"

    print()
    print(benchlib.load_note())
    lines = [
        f"{label} orc, from POST sent:      {orcbench.ms_line(pooled(orc, 'from_trigger'))}",
        f"{label} orc, from POST answered:  {orcbench.ms_line(pooled(orc, 'from_response'))}",
        f"{label} orc, spread:              {orcbench.ms_line(pooled(orc, 'spread'))}",
        f"{label} baseline, from go sent:   {orcbench.ms_line(pooled(base, 'from_trigger'))}",
        f"{label} baseline, spread:         {orcbench.ms_line(pooled(base, 'spread'))}",
        f"{label} orc: {complete(orc)}; baseline: {complete(base)}",
    ]
    orc_p99 = orcbench.percentile(pooled(orc, "from_trigger"), 99)
    base_p99 = orcbench.percentile(pooled(base, "from_trigger"), 99)
    ratio = orc_p99 / base_p99
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    lines.append(
        f"{label} ratio orc p99 / baseline p99 (from trigger): {ratio:.2f}  "
        f"target <= {TARGET_RATIO:g}: {verdict}"
    )
    spread_ratio = orcbench.percentile(pooled(orc, "spread"), 99) / max(
        orcbench.percentile(pooled(base, "spread"), 99), 1e-9
    )
    lines.append(f"{label} ratio of the spreads' p99 (fan-out alone): {spread_ratio:.2f}")
    calls = [r.broadcast for r in base if r.broadcast is not None]
    if calls:
        lines.append(
            f"{label} baseline: the broadcast() call itself took median "
            f"{statistics.median(calls) * 1000:.1f} ms (max {max(calls) * 1000:.1f}) in its server"
        )
    first_after_response = [min(r.from_response()) for r in orc if r.arrivals]
    per_round_p99 = [orcbench.percentile(r.from_trigger(), 99) for r in orc if r.arrivals]
    if first_after_response:
        lines.append(
            f"{label} orc: first delivery after the POST's response: median "
            f"{statistics.median(first_after_response) * 1000:.1f} ms (min "
            f"{min(first_after_response) * 1000:.1f}, max {max(first_after_response) * 1000:.1f}); "
            f"per-round p99 from POST: median {statistics.median(per_round_p99) * 1000:.1f} ms"
        )
    for line in lines:
        print(orcbench.SUMMARY_PREFIX + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--pg-url", default=orcbench.DEFAULT_PG_URL)
    parser.add_argument(
        "--trace",
        action="store_true",
        help="run orc's API process with time stamps in orc.outbox.live and /api/ws (diagnostic)",
    )
    parser.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--traced-api", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        use_uvloop()
        asyncio.run(serve_baseline(args.port))
        return
    if args.traced_api:
        run_traced_api()
        return
    if orcbench.per_database(args.db):
        return
    fds = raise_fd_limit()  # inherited by the servers started below
    loop_name = use_uvloop()
    print(
        f"WebSocket fan-out: {args.clients} clients per server, {args.rounds} rounds each, "
        f"client loop {loop_name}, fd limit {fds}"
    )
    print(benchlib.load_note())
    with (
        benchlib.temp_dir("orc-bench-ws-") as root,
        orcbench.make_store(args.db, root, args.pg_url) as store,
    ):
        trace = root / "trace.txt"
        orc = start_traced_orc(store, trace) if args.trace else orcbench.start_orc(store)
        base_port = benchlib.free_port()
        baseline = benchlib.Server(
            "baseline",
            [benchlib.python_exe(), __file__, "--baseline-server", "--port", str(base_port)],
            benchlib.clean_env(root / "base-home", root / "base-user"),
            base_port,
            root / "baseline.log",
        )
        try:
            baseline.start()
            baseline.wait_healthy()
            rounds = asyncio.run(run_rounds(orc.port, base_port, args))
        finally:
            baseline.stop()
            orc.stop()
        report(store.label, rounds, args.clients)
        if args.trace:
            for line in trace_breakdown(rounds, trace):
                print(orcbench.SUMMARY_PREFIX + f"{store.label} {line}")


if __name__ == "__main__":
    sys.exit(main())
