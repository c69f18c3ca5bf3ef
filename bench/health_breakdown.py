"""Where orc's per-request cost goes: orc's app with one piece of middleware work removed.

A diagnostic for bench/health_rps.py, not a benchmark with a target. Each variant runs
``orc.api.app.create_app`` single-process the way ``python -m orc _api`` does (same settings,
same PROMETHEUS_MULTIPROC_DIR set-up, ORC_LOG_LEVEL=warning), with orc.api.app patched in the
variant's own process only; orc's code is not changed. The variants:

  orc           orc.api.app as it is
  lazy-log      the access-log call and its ``extra`` dict only when INFO is enabled
                (orc builds the dict, with str(request.id) and request.remote_addr, even when
                the log line is then dropped)
  lazy-log-noid lazy-log, and no X-Request-ID header (no uuid4 per request)
  lazy-log-nomx lazy-log, and no Prometheus metrics (no observe_request)
  lazy-log-1reg lazy-log, with prometheus_client in single-process mode (no mmap files)
  empty-mw      orc's two middleware registered, but they do nothing
  no-mw         no middleware at all (orc's routes, error handler, blueprints only)
  gc-freeze     orc.api.app as it is, plus gc.freeze() once the server has started
  bare          bench/bare_sanic.py

Servers run on the last CPU and wrk on the others (--no-pin: anywhere). It reports
requests/s and the server's CPU time per request, which is much less sensitive than
requests/s to other load on the machine. The difference in CPU us/req between two variants
is the cost of what separates them. The patched ``_on_response`` functions below
mirror orc/api/app.py as written when this script was; update them if that changes.

Run: .venv/bin/python bench/health_breakdown.py [--rounds 3] [--duration 6] [--variants a,b]
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import benchlib
from health_rps import run_wrk

VARIANTS = (
    "orc",
    "lazy-log",
    "lazy-log-noid",
    "lazy-log-nomx",
    "lazy-log-1reg",
    "empty-mw",
    "no-mw",
    "gc-freeze",
    "bare",
)


def serve_variant(variant: str, port: int) -> None:
    """Run orc's app with ``variant`` applied (in this process only) until SIGTERM."""
    if variant != "lazy-log-1reg":
        # Inside the run's directory (this process's cwd), which the parent removes.
        metrics_dir = Path.cwd() / f"metrics-{variant}"
        metrics_dir.mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    from sanic import Request, Sanic
    from sanic.response import HTTPResponse

    import orc.api.app as orc_app
    from orc.config import load_settings
    from orc.runtime.logs import setup_logging

    def lazy_on_response(
        request_id: bool, metrics: bool
    ) -> Callable[[Request, HTTPResponse], Awaitable[None]]:
        async def on_response(request: Request, response: HTTPResponse) -> None:
            if request.app.ctx.stopping and hasattr(request.stream, "keep_alive"):
                request.stream.keep_alive = False  # type: ignore[union-attr]
            started = getattr(request.ctx, "started", None)
            seconds = time.perf_counter() - started if started is not None else 0.0
            route = orc_app._route_template(request)
            if metrics:
                orc_app.observe_request(request.method, route, response.status, seconds)
            if request_id:
                response.headers["X-Request-ID"] = str(request.id)
            if orc_app.access_log.logger.isEnabledFor(logging.INFO):
                raise RuntimeError("this variant is for ORC_LOG_LEVEL=warning only")

        return on_response

    async def nothing(*args: object) -> None:
        return None

    if variant == "lazy-log" or variant == "lazy-log-1reg":
        orc_app._on_response = lazy_on_response(request_id=True, metrics=True)
    elif variant == "lazy-log-noid":
        orc_app._on_response = lazy_on_response(request_id=False, metrics=True)
    elif variant == "lazy-log-nomx":
        orc_app._on_response = lazy_on_response(request_id=True, metrics=False)
    elif variant == "empty-mw":
        orc_app._on_request = nothing
        orc_app._on_response = nothing
    elif variant == "no-mw":
        Sanic.on_request = lambda self, middleware=None, **kw: middleware  # type: ignore
        Sanic.on_response = lambda self, middleware=None, **kw: middleware  # type: ignore
    elif variant not in ("orc", "gc-freeze"):
        raise SystemExit(f"unknown variant {variant}")

    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format)
    app = orc_app.create_app(settings)
    if variant == "gc-freeze":

        async def freeze(app: Sanic) -> None:
            gc.collect()
            gc.freeze()

        app.after_server_start(freeze)
    app.prepare(
        host=benchlib.HOST,
        port=port,
        single_process=True,
        access_log=False,
        motd=False,
        backlog=1024,
    )
    Sanic.serve_single(primary=app)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=6, help="seconds per measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument(
        "--no-pin", action="store_true", help="do not put servers and wrk on separate CPUs"
    )
    parser.add_argument("--serve", nargs=2, metavar=("VARIANT", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_variant(args.serve[0], int(args.serve[1]))
        return
    server_cpus, wrk_cpus = (None, None) if args.no_pin else benchlib.split_cpus()
    variants = args.variants.split(",")
    if "bare" not in variants:
        variants.append("bare")

    print(
        f"GET /api/health: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, "
        f"{args.rounds} interleaved rounds of {len(variants)} variants"
        + ("" if args.no_pin else f", servers on CPU {server_cpus}, wrk on CPU {wrk_cpus}")
    )
    print(benchlib.load_note())
    with benchlib.temp_dir("orc-bench-breakdown-") as root:
        env = benchlib.clean_env(root / "home", root / "user")
        subprocess.run(
            [*benchlib.orc_command(), "migrate"], env=env, cwd=root, check=True, capture_output=True
        )
        servers: dict[str, benchlib.Server] = {}
        for name in variants:
            port = benchlib.free_port()
            if name == "bare":
                servers[name] = benchlib.bare_sanic_server(root / "bare", port)
            else:
                argv = [benchlib.python_exe(), str(Path(__file__)), "--serve", name, str(port)]
                servers[name] = benchlib.Server(
                    name, argv, dict(env), port, root / f"{name}.log", cwd=root
                )
            servers[name].cpus = server_cpus
            servers[name].start()
        rps: dict[str, list[float]] = {n: [] for n in variants}
        cpu: dict[str, list[float]] = {n: [] for n in variants}
        p99: dict[str, list[float]] = {n: [] for n in variants}
        try:
            pids = {}
            for name, server in servers.items():
                server.wait_healthy()
                pids[name] = [server.pid, *server.descendant_pids()]
            for server in servers.values():
                run_wrk(server.port, args.threads, args.connections, 3, cpus=wrk_cpus)
            for i in range(args.rounds):
                order = variants if i % 2 == 0 else variants[::-1]
                for name in order:
                    r = run_wrk(
                        servers[name].port,
                        args.threads,
                        args.connections,
                        args.duration,
                        pids[name],
                        wrk_cpus,
                    )
                    rps[name].append(r["rps"])
                    cpu[name].append(r["cpu_us"])
                    p99[name].append(r["p99_ms"])
                print(
                    f"round {i + 1}: "
                    + ", ".join(f"{n} {rps[n][-1]:.0f}/s {cpu[n][-1]:.0f}us" for n in variants),
                    flush=True,
                )
        finally:
            for server in servers.values():
                server.stop()

    print()
    print(benchlib.load_note())
    bare_rps = statistics.median(rps["bare"])
    bare_cpu = statistics.median(cpu["bare"])
    orc_cpu = statistics.median(cpu["orc"]) if "orc" in cpu else None
    print(
        f"{'variant':>14} {'req/s':>7} {'/bare':>6} {'CPU us/req':>10} {'+bare':>6} "
        f"{'-orc':>6} {'p99 ms':>7}"
    )
    for name in variants:
        m_rps = statistics.median(rps[name])
        m_cpu = statistics.median(cpu[name])
        saved = f"{orc_cpu - m_cpu:6.1f}" if orc_cpu is not None else "     -"
        print(
            f"{name:>14} {m_rps:7.0f} {m_rps / bare_rps:6.3f} {m_cpu:10.1f} "
            f"{m_cpu - bare_cpu:6.1f} {saved} {statistics.median(p99[name]):7.1f}"
        )
    print("(+bare: CPU us/req above bare Sanic; -orc: CPU us/req saved against orc as it is)")


if __name__ == "__main__":
    sys.exit(main())
