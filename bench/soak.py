"""Soak: ``orc serve`` (default configuration) under a bounded mixed load, for minutes or hours.

What runs, on a new store (SQLite, or a new PostgreSQL database dropped afterwards):
``orc serve --workers 1`` with its job worker (which folds usage into the rollups), on
127.0.0.1 and a free port. This process then runs, until ``--duration`` seconds or
``--max-requests`` requests, whichever comes first:

- ``--clients`` threads (8-16), each a keep-alive connection looping over the mix: create a
  task, record usage in a batch of ``--batch`` (20) events for it, list tasks (page 1, or a
  later page, or a status/weight filter), read one task (a random one created so far), the
  cost summary, the metrics;
- ``--subscribers`` WebSocket clients (0-50) subscribed to every task, counting the events
  delivered to them;
- one client that behaves like the dashboard (orc/web/app/app.js): subscribed too, it
  reloads the task list 250 ms after a task event (debounced), the task it shows
  (task + usage) after an event of that task, and the cost page (summary + 30-day series)
  1 s after a ``tokens`` event; it pings every 25 s.

Printed: RSS of every process ``orc serve`` starts, every ``--sample`` seconds; p50/p99 and
requests/s per endpoint per ``--window`` seconds, with each process's CPU per request (and the
PostgreSQL server's, on PostgreSQL) (300 = the issue's 5 minutes; make it short
for a short run); errors (any unexpected status or exception, per endpoint); WebSocket events
delivered; a yardstick (a fixed CPU workload in a process of its own, every 5 s) per window,
and the API's CPU per request in yardstick rounds relative to the first window, since the
machine's own speed drifts during a long run. At the end, against the issue's targets: each
process's RSS at the end within 10 % of its value at the end of the first window; each
endpoint's p99 in the last window at most 1.2x that of the first; 0 errors.

``--tracemalloc FRAMES`` (a diagnostic) starts tracemalloc in the API process, or with
``--trace worker`` in the job worker (through a ``sitecustomize`` on PYTHONPATH that acts only
in that process; orc's code is not changed) from ``--sample`` seconds after start-up, dumps a
snapshot every ``--sample`` seconds, and prints the allocations that grew
most between the end of the first window and the end of the run.

``--store DIR`` soaks a store kept by ``reads_at_scale.py --keep`` (e.g. 100,000 tasks against
1,000, for the issue's throughput at scale) instead of a new one, and leaves it there.

Run: .venv/bin/python bench/soak.py [--db sqlite,postgres] [--duration 1800] [--window 300]
     [--clients 12] [--subscribers 20] [--max-requests 2000000]
     [--tracemalloc 25 [--trace worker]] [--store DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib
import orcbench
import psutil

MIB = 1024 * 1024
RSS_TOLERANCE = 0.10
P99_RATIO = 1.2
PAGE_SIZE = 50  # the dashboard's page
STATUSES = ("created", "planned", "running", "paused", "completed")
WEIGHTS = ("trivial", "small", "medium", "large")
TRACE_ENV = "ORC_SOAK_TRACE_DIR"
TRACE_FRAMES_ENV = "ORC_SOAK_TRACE_FRAMES"
TRACE_EVERY_ENV = "ORC_SOAK_TRACE_EVERY"
TRACE_ARG_ENV = "ORC_SOAK_TRACE_ARG"
SITECUSTOMIZE = f'''
"""Written by bench/soak.py --tracemalloc: snapshots of orc's API process, nothing else."""
import os, sys, threading, time
if os.environ.get("{TRACE_ARG_ENV}", "_api") in sys.argv and os.environ.get("{TRACE_ENV}"):
    import tracemalloc
    def _dump():
        out, every, n = os.environ["{TRACE_ENV}"], float(os.environ["{TRACE_EVERY_ENV}"]), 0
        # Traced from the first sample on, not during start-up (tracing imports is slow, and
        # only what is allocated under load, and kept, matters here).
        time.sleep(every)
        tracemalloc.start(int(os.environ["{TRACE_FRAMES_ENV}"]))
        while True:
            time.sleep(every)
            n += 1
            path = os.path.join(out, "snap-%05d-%d.pickle" % (n, time.time()))
            tracemalloc.take_snapshot().dump(path + ".part")
            os.replace(path + ".part", path)
    threading.Thread(target=_dump, name="soak-tracemalloc", daemon=True).start()
'''


# ----------------------------------------------------------------------------- records


@dataclass
class Record:
    """Latencies per window and endpoint, errors, and the events the subscribers received."""

    window: float
    started: float = field(default_factory=time.perf_counter)
    times: dict[int, dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    error_samples: list[str] = field(default_factory=list)
    requests: int = 0
    ws_events: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, endpoint: str, seconds: float, ok: bool, detail: str = "") -> None:
        index = int((time.perf_counter() - self.started) // self.window)
        with self.lock:
            self.requests += 1
            self.times[index][endpoint].append(seconds)
            if not ok:
                self.errors[endpoint] += 1
                if len(self.error_samples) < 10:
                    self.error_samples.append(f"{endpoint}: {detail[:200]}")


class Client:
    """One keep-alive connection that records every request's time and outcome."""

    def __init__(self, port: int, record: Record) -> None:
        self.http = orcbench.Http(port)
        self.record = record

    def call(
        self, endpoint: str, method: str, path: str, body: Any = None, expect: int = 200
    ) -> Any:
        try:
            status, data, seconds = self.http.request(method, path, body)
        except Exception as error:  # every failure counts
            self.record.add(endpoint, 0.0, False, repr(error))
            return None
        ok = status == expect
        self.record.add(endpoint, seconds, ok, f"{status} {data[:150]!r}")
        if not ok:
            return None
        return json.loads(data) if data and endpoint != "metrics" else data


# ----------------------------------------------------------------------------- load


@dataclass
class Load:
    port: int
    record: Record
    deadline: float
    max_requests: int
    batch: int
    stop: threading.Event = field(default_factory=threading.Event)
    task_ids: list[str] = field(default_factory=list)

    def done(self) -> bool:
        if time.perf_counter() >= self.deadline or self.record.requests >= self.max_requests:
            self.stop.set()
        return self.stop.is_set()

    def usage_body(self, seed: int) -> dict[str, Any]:
        return {"events": orcbench.make_events(self.batch, seed)}

    def list_path(self, rng: random.Random) -> str:
        pages = max(1, len(self.task_ids) // PAGE_SIZE)
        choice = rng.randrange(4)
        if choice == 0:
            return f"/api/tasks?page=1&limit={PAGE_SIZE}"
        if choice == 1:
            return f"/api/tasks?page={rng.randint(1, pages)}&limit={PAGE_SIZE}"
        if choice == 2:
            return f"/api/tasks?status={rng.choice(STATUSES)}&limit={PAGE_SIZE}"
        return f"/api/tasks?weight={rng.choice(WEIGHTS)}&limit={PAGE_SIZE}"

    def client_loop(self, n: int) -> None:
        client = Client(self.port, self.record)
        rng = random.Random(n)
        seed = 0
        while not self.done():
            task = client.call(
                "create task",
                "POST",
                "/api/tasks",
                {"title": f"soak {n}-{seed}", "weight": WEIGHTS[seed % 4]},
                201,
            )
            if task is not None:
                self.task_ids.append(task["id"])
                client.call(
                    "usage batch",
                    "POST",
                    f"/api/tasks/{task['id']}/usage",
                    self.usage_body(seed),
                    201,
                )
            seed += 1
            client.call("list tasks", "GET", self.list_path(rng))
            if self.task_ids:
                client.call("one task", "GET", f"/api/tasks/{rng.choice(self.task_ids)}")
            client.call("cost summary", "GET", "/api/cost/summary")
            client.call("metrics", "GET", "/api/metrics")
        client.http.close()


class Dashboard:
    """What one open dashboard asks for when events arrive (debounced as app.js does)."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.client = Client(load.port, load.record)
        self.wake = threading.Event()
        self.list_due = False
        self.task_due: str | None = None
        self.cost_due = False
        self.shown: str | None = None

    def on_event(self, message: dict[str, Any]) -> None:
        task_id = message.get("task_id")
        if not task_id:
            return
        self.list_due = True
        if self.shown is None or message.get("event_type") == "task_created":
            self.shown = task_id  # the person clicked the newest task
        if task_id == self.shown:
            self.task_due = task_id
        if message.get("event_type") == "tokens":
            self.cost_due = True
        self.wake.set()

    def run(self) -> None:
        last_cost = 0.0
        while not self.load.done():
            if not self.wake.wait(0.5):
                continue
            time.sleep(0.25)
            self.wake.clear()
            if self.list_due:
                self.list_due = False
                self.client.call("dashboard list", "GET", f"/api/tasks?page=1&limit={PAGE_SIZE}")
            if self.task_due:
                task_id, self.task_due = self.task_due, None
                self.client.call("dashboard task", "GET", f"/api/tasks/{task_id}")
                self.client.call("dashboard task usage", "GET", f"/api/tasks/{task_id}/usage")
            if self.cost_due and time.perf_counter() - last_cost >= 1.0:
                self.cost_due, last_cost = False, time.perf_counter()
                self.client.call("dashboard cost", "GET", "/api/cost/summary")
                self.client.call("dashboard series", "GET", "/api/cost/timeseries?days=30")
        self.client.http.close()


async def subscribers(load: Load, count: int, dashboard: Dashboard) -> None:
    """``count`` subscribers plus the dashboard's socket, until the load stops."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    url = f"ws://{benchlib.HOST}:{load.port}/api/ws"
    record = load.record

    async def one(is_dashboard: bool) -> None:
        async with connect(url, compression=None, proxy=None, ping_interval=None) as ws:
            await ws.send(json.dumps({"type": "subscribe", "task_id": "*"}))
            last_ping = time.perf_counter()
            while not load.stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    raw = None
                except ConnectionClosed as error:
                    record.add("websocket", 0.0, False, repr(error))
                    return
                if is_dashboard and time.perf_counter() - last_ping > 25:
                    await ws.send(json.dumps({"type": "ping"}))
                    last_ping = time.perf_counter()
                if raw is None:
                    continue
                message = json.loads(raw)
                if message.get("type") == "event":
                    with record.lock:
                        record.ws_events += 1
                    if is_dashboard:
                        dashboard.on_event(message)

    results = await asyncio.gather(*(one(i == 0) for i in range(count + 1)), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            record.add("websocket", 0.0, False, repr(result))


# ----------------------------------------------------------------------------- memory


def role_of(proc: psutil.Process, root_pid: int) -> str:
    cmd = proc.cmdline()
    if proc.pid == root_pid:
        return "launcher"
    if "_api" in cmd:
        return "API"
    if "worker" in cmd:
        return "job worker"
    return " ".join(cmd)[-40:]


def sample_rss(root_pid: int) -> dict[str, float]:
    """RSS in MiB of ``orc serve`` and every process below it, by role."""
    root = psutil.Process(root_pid)
    rows: dict[str, float] = {}
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            role = role_of(proc, root_pid)
            rows[role if role not in rows else f"{role} {proc.pid}"] = proc.memory_info().rss / MIB
    return rows


def sample_cpu(root_pid: int, seen: dict[tuple[str, int], float]) -> dict[str, float]:
    """CPU seconds (user + system) so far of each role, and of every PostgreSQL process: where
    a throughput drop comes from, orc's API or the database, shows as CPU per request.

    ``seen`` keeps the last figure of each (role, pid) from one sample to the next: a process
    that ends (a PostgreSQL backend of a closed connection) keeps counting with what it used."""
    root = psutil.Process(root_pid)
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            seen[(role_of(proc, root_pid), proc.pid)] = times.user + times.system
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("postgres", "postmaster"):
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                seen[("PostgreSQL", proc.pid)] = times.user + times.system
    cpu: dict[str, float] = defaultdict(float)
    for (role, _), seconds in seen.items():
        cpu[role] += seconds
    return dict(cpu)


# A fixed CPU workload (JSON, integer arithmetic, an in-memory SQLite scan), timed in its own
# process every YARDSTICK_EVERY seconds: these VMs' CPUs slow down and speed up by a third with
# their neighbours (measured here: 37 to 64 ms for the same work within one soak), which no
# figure of orc's own can tell from orc getting slower. Its CPU time per round is printed.
YARDSTICK_EVERY = 5.0
YARDSTICK = """
import json, sqlite3, sys, time
db = sqlite3.connect(":memory:")
db.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
db.executemany("INSERT INTO t (b) VALUES (?)", [(str(i) * 5,) for i in range(50000)])
doc = {"k%d" % i: [i, str(i), {"x": i * 1.5}] for i in range(2000)}
while True:
    started = time.process_time()
    for _ in range(3):
        json.loads(json.dumps(doc))
        sum(i * i for i in range(100000))
        db.execute("SELECT count(*) FROM t WHERE b LIKE '%7%'").fetchone()
    print(time.process_time() - started, flush=True)
    time.sleep(float(sys.argv[1]))
"""


class Yardstick:
    """The machine's speed during the run: the yardstick's CPU seconds per round, with when."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.rounds: list[tuple[float, float]] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", YARDSTICK, str(YARDSTICK_EVERY)],
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.rounds.append((time.perf_counter() - self.started, float(line)))

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def median_ms(self, start: float, end: float) -> float | None:
        """The median round (ms) between two moments of the run, None without any."""
        inside = sorted(took for at, took in self.rounds if start <= at < end)
        return inside[len(inside) // 2] * 1000 if inside else None


@dataclass
class CpuSample:
    at: float
    requests: int
    cpu: dict[str, float]


def sampler(
    load: Load,
    root_pid: int,
    every: float,
    samples: list[tuple[float, dict]],
    cpu_samples: list[CpuSample],
) -> None:
    started = load.record.started
    seen: dict[tuple[str, int], float] = {}
    while True:
        at = time.perf_counter() - started
        rows = sample_rss(root_pid)
        samples.append((at, rows))
        cpu_samples.append(CpuSample(at, load.record.requests, sample_cpu(root_pid, seen)))
        cells = "  ".join(f"{role} {mib:6.1f}" for role, mib in rows.items())
        print(
            f"  [{at:7.0f}s] RSS MiB: {cells}  | requests {load.record.requests}, "
            f"WS events {load.record.ws_events}, load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        if load.stop.wait(every):
            at = time.perf_counter() - started
            samples.append((at, sample_rss(root_pid)))
            cpu_samples.append(CpuSample(at, load.record.requests, sample_cpu(root_pid, seen)))
            return


# ----------------------------------------------------------------------------- report


def report_windows(record: Record) -> list[str]:
    """Per window: p50/p99/rps per endpoint; the p99 verdict first window vs last."""
    lines: list[str] = []
    windows = sorted(record.times)
    for index in windows:
        per = record.times[index]
        total = sum(len(v) for v in per.values())
        print(
            f"\n  window {index + 1} ({index * record.window:.0f}-"
            f"{(index + 1) * record.window:.0f}s): {total} requests, "
            f"{total / record.window:.1f}/s"
        )
        for endpoint in sorted(per):
            print(f"    {endpoint:<22} {orcbench.ms_line(per[endpoint])}")
    full = [i for i in windows if len(record.times[i]) and i < windows[-1]] or windows
    if len(full) >= 2:
        first, last = record.times[full[0]], record.times[full[-1]]
        # Every window's p99 beside the verdict: an endpoint with a few hundred requests a
        # window has its p99 in its three slowest, and how much that moves between windows
        # says how much of a ratio is chance.
        print(
            f"\n  p99, last full window ({full[-1] + 1}) vs first ({full[0] + 1}); "
            "every window's p99 in ms:"
        )
        worst = 0.0
        for endpoint in sorted(first):
            if not last.get(endpoint):
                continue
            a = orcbench.percentile(first[endpoint], 99) * 1000
            b = orcbench.percentile(last[endpoint], 99) * 1000
            worst = max(worst, b / a)
            each = ", ".join(
                f"{orcbench.percentile(record.times[i][endpoint], 99) * 1000:.0f}"
                for i in full
                if record.times[i].get(endpoint)
            )
            print(f"    {endpoint:<22} {a:8.2f} ms -> {b:8.2f} ms  ({b / a:.2f}x)  [{each}]")
        pooled = [
            orcbench.percentile([t for ts in record.times[i].values() for t in ts], 99) * 1000
            for i in full
        ]
        print(f"    {'all requests':<22} " + ", ".join(f"{v:.0f}" for v in pooled) + " ms")
        verdict = "PASS" if worst <= P99_RATIO else "FAIL"
        lines.append(f"worst p99 ratio last/first window {worst:.2f}x (<= {P99_RATIO}): {verdict}")
        rps = [sum(len(v) for v in record.times[i].values()) / record.window for i in full]
        lines.append(f"requests/s first window {rps[0]:.1f}, last {rps[-1]:.1f}")
    return lines


def report_cpu(cpu_samples: list[CpuSample], window: float, yardstick: Yardstick) -> None:
    """Per window, each process's CPU per request (ms) and its share of a core; the yardstick's
    round (ms) and the API's CPU per request in yardstick rounds, relative to the first window:
    a figure that grows there is orc's work growing, not the machine slowing down."""
    print("\n  CPU per request (ms, user + system) and cores busy, per window:")
    first: float | None = None
    edges = cpu_samples
    index = 1
    while True:
        start = next((s for s in edges if s.at >= (index - 1) * window - 1), None)
        end = next((s for s in edges if s.at >= index * window - 1), None)
        if start is None or end is None or end is start:
            return
        requests = max(1, end.requests - start.requests)
        seconds = end.at - start.at
        cells = "  ".join(
            f"{role} {(end.cpu[role] - start.cpu.get(role, 0.0)) / requests * 1000:.2f} ms"
            f" ({(end.cpu[role] - start.cpu.get(role, 0.0)) / seconds:.2f})"
            for role in sorted(end.cpu)
        )
        took = yardstick.median_ms(start.at, end.at)
        if took is not None and "API" in end.cpu:
            api = (end.cpu["API"] - start.cpu.get("API", 0.0)) / requests * 1000 / took
            if first is None:
                first = api
            cells += f"  | yardstick {took:.1f} ms, API in yardsticks {api / first:.2f}x"
        print(f"    window {index}: {cells}")
        index += 1


def report_rss(samples: list[tuple[float, dict[str, float]]], window: float) -> list[str]:
    """Each process's RSS at the end against its value at the end of the first window."""
    base = next(((at, rows) for at, rows in samples if at >= window), None)
    if base is None:
        return ["RSS: the run was shorter than one window; no verdict"]
    end_at, end = samples[-1]
    lines = []
    for role, mib in base[1].items():
        if role not in end:
            continue
        growth = end[role] / mib - 1
        verdict = "PASS" if growth <= RSS_TOLERANCE else "FAIL"
        per_min = (end[role] - mib) / max(1e-9, (end_at - base[0]) / 60)
        lines.append(
            f"RSS {role}: {mib:.1f} MiB at {base[0]:.0f}s -> {end[role]:.1f} MiB at "
            f"{end_at:.0f}s ({growth:+.1%}, {per_min:+.2f} MiB/min; <= +10%: {verdict})"
        )
    return lines


def report_tracemalloc(trace_dir: Path, window: float, top: int = 25) -> None:
    snaps = sorted(trace_dir.glob("snap-*.pickle"))
    if len(snaps) < 2:
        print("  tracemalloc: fewer than two snapshots")
        return
    first_at = int(snaps[0].stem.split("-")[2])
    base = next((s for s in snaps if int(s.stem.split("-")[2]) - first_at >= window), snaps[0])
    old, new = tracemalloc.Snapshot.load(str(base)), tracemalloc.Snapshot.load(str(snaps[-1]))
    skip = [tracemalloc.Filter(False, tracemalloc.__file__)]
    old, new = old.filter_traces(skip), new.filter_traces(skip)
    print(f"\n  tracemalloc: {snaps[-1].name} against {base.name}, by line")
    for stat in new.compare_to(old, "lineno")[:top]:
        print(f"    {stat}")
    print("\n  by traceback, the 5 that grew most:")
    for stat in new.compare_to(old, "traceback")[:5]:
        print(f"    {stat.size_diff / 1024:+.1f} KiB in {stat.count_diff:+d} blocks")
        for line in stat.traceback.format(limit=12):
            print(f"      {line}")


# ----------------------------------------------------------------------------- main


def run_store(store: orcbench.Store, args: argparse.Namespace) -> list[str]:
    port = benchlib.free_port()
    server = benchlib.orc_server(store.data_dir, port, ("--workers", "1"), tag=f"-{store.kind}")
    server.env = store.env
    trace_dir = store.data_dir / "tracemalloc"
    if args.tracemalloc:
        site = store.data_dir / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        trace_dir.mkdir()
        server.env.update(
            {
                "PYTHONPATH": str(site),
                TRACE_ENV: str(trace_dir),
                TRACE_FRAMES_ENV: str(args.tracemalloc),
                TRACE_EVERY_ENV: str(args.sample),
                TRACE_ARG_ENV: "worker" if args.trace == "worker" else "_api",
            }
        )
    server.start()
    yardstick: Yardstick | None = None
    try:
        # Start-up under tracemalloc (every import traced) takes minutes on a busy machine.
        server.wait_healthy(timeout=600 if args.tracemalloc else 60)
        record = Record(args.window)
        yardstick = Yardstick(record.started)
        load = Load(
            port, record, time.perf_counter() + args.duration, args.max_requests, args.batch
        )
        dashboard = Dashboard(load)
        samples: list[tuple[float, dict[str, float]]] = []
        cpu_samples: list[CpuSample] = []
        threads = [
            threading.Thread(target=load.client_loop, args=(i,), daemon=True)
            for i in range(args.clients)
        ]
        threads.append(threading.Thread(target=dashboard.run, daemon=True))
        threads.append(
            threading.Thread(
                target=asyncio.run,
                args=(subscribers(load, args.subscribers, dashboard),),
                daemon=True,
            )
        )
        threads.append(
            threading.Thread(
                target=sampler,
                args=(load, server.pid, args.sample, samples, cpu_samples),
                daemon=True,
            )
        )
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - record.started
    finally:
        if yardstick is not None:
            yardstick.stop()
        server.stop()
    print(
        f"\n{store.label}: {record.requests} requests in {elapsed:.0f}s "
        f"({record.requests / elapsed:.1f}/s), {record.ws_events} WebSocket events delivered"
    )
    print(f"  {benchlib.load_note()}")
    lines = report_windows(record)
    report_cpu(cpu_samples, args.window, yardstick)
    lines += report_rss(samples, args.window)
    errors = sum(record.errors.values())
    lines.append(f"errors: {errors} ({dict(record.errors)})" + ("" if errors else ": PASS"))
    for sample in record.error_samples:
        print(f"  ! {sample}")
    if args.tracemalloc:
        report_tracemalloc(trace_dir, args.window)
    return [f"{store.label}: {line}" for line in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres, or both")
    parser.add_argument("--pg-url", default=orcbench.DEFAULT_PG_URL)
    parser.add_argument("--duration", type=float, default=1800, help="seconds of load")
    parser.add_argument("--window", type=float, default=300, help="seconds per latency window")
    parser.add_argument("--sample", type=float, default=30, help="seconds between RSS samples")
    parser.add_argument("--clients", type=int, default=12, help="looping clients (8-16)")
    parser.add_argument("--subscribers", type=int, default=20, help="WebSocket clients (0-50)")
    parser.add_argument("--batch", type=int, default=20, help="usage events per request")
    parser.add_argument("--max-requests", type=int, default=2_000_000)
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES")
    parser.add_argument(
        "--trace", choices=("api", "worker"), default="api", help="the process --tracemalloc traces"
    )
    parser.add_argument(
        "--store",
        type=Path,
        help="a store kept by reads_at_scale.py --keep (its DIR/KIND-SIZE): soak it, keep it",
    )
    args = parser.parse_args()
    # SIGTERM (timeout, kill) unwinds like Ctrl-C, so that the server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if orcbench.per_database(args.db):
        return
    print(
        f"soak: orc serve --workers 1 (with its job worker), {args.clients} clients, "
        f"{args.subscribers} subscribers + 1 dashboard, {args.duration:.0f}s or "
        f"{args.max_requests} requests, windows of {args.window:.0f}s"
    )
    print(benchlib.load_note())
    if args.store:
        url = json.loads((args.store / "store.json").read_text())["database_url"]
        kind = "postgres" if url.startswith("postgres") else "sqlite"
        summary = run_store(orcbench.Store(kind, args.store, url), args)
        print()
        for line in summary:
            print(orcbench.SUMMARY_PREFIX + line)
        return
    with (
        benchlib.temp_dir("orc-bench-soak-") as root,
        orcbench.make_store(args.db, root, args.pg_url, secrets.token_hex(3)) as store,
    ):
        summary = run_store(store, args)
    print()
    for line in summary:
        print(orcbench.SUMMARY_PREFIX + line)


if __name__ == "__main__":
    main()
