"""Where orc's per-request cost goes: orc's API with one piece of its per-request work removed.

A diagnostic for bench/health_rps.py, not a benchmark with a target. Each variant runs orc's
API single-process the way ``orc serve``'s API process does (``orc.runtime.api_process``:
the log writer thread, the access log handed to it), at ORC_LOG_LEVEL=info with the probes
logged, with one change made in the variant's own process only (orc's code is not changed):

  orc         as it is, at info (orc's default level): one access line per request
  orc-warn    as it is, at warning: no access line
  no-access   at info, but no access line for /api/health (the fields and the writer's work)
  no-metrics  at info, without counting the request in the HTTP metrics (observe_request)
  empty-mw    at info, orc's response middleware replaced by one that does nothing (what
              Sanic's running of a response middleware costs)
  no-mw       at info, without orc's response middleware at all (request id header, metrics,
              access line)
  bare        bench/bare_sanic.py

Servers run on the last CPU and wrk on the others (--no-pin: anywhere). It reports
requests/s and the server's CPU time per request (every thread of the process: the log
writer's too), which is much less sensitive than requests/s to other load on the machine. The
difference in CPU us/req between two variants is the cost of what separates them.

Run: .venv/bin/python bench/health_breakdown.py [--rounds 3] [--duration 6] [--variants a,b]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

import benchlib
from health_rps import run_wrk

VARIANTS = ("orc", "orc-warn", "no-access", "no-metrics", "empty-mw", "no-mw", "bare")


def serve_variant(variant: str, port: int) -> None:
    """Run orc's API with ``variant`` applied (in this process only) until SIGTERM."""
    if variant not in VARIANTS or variant == "bare":
        raise SystemExit(f"unknown variant {variant}")
    os.environ["ORC_LOG_LEVEL"] = "warning" if variant == "orc-warn" else "info"
    from sanic import Request, Sanic
    from sanic.response import HTTPResponse

    import orc.api.app as orc_app
    from orc.config import load_settings
    from orc.runtime.api_process import _create_app

    if variant == "no-metrics":
        orc_app.observe_request = lambda *_: None  # type: ignore[assignment]
    settings = load_settings()
    app = _create_app(settings)
    if variant == "no-access":
        app.ctx.unlogged = frozenset({"/api/health"})
    elif variant in ("empty-mw", "no-mw"):
        app.response_middleware.clear()
        if variant == "empty-mw":

            async def nothing(request: Request, response: HTTPResponse) -> None:
                return None

            app.on_response(nothing)
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
