"""Requests/s on GET /api/health: ``orc serve --workers 1 --no-worker`` versus bare Sanic.

Both servers run side by side for the whole benchmark (the idle one costs nothing), so the
measurements can be interleaved: after a warm-up of each, every round measures both, in
alternating order (orc first in odd rounds, bare first in even ones). The baseline is
bench/bare_sanic.py on the same Sanic and interpreter. Target: orc/bare >= 0.85 at
ORC_LOG_LEVEL=warning.

With --info-log a third server is added: orc at ORC_LOG_LEVEL=info (the default), where every
request writes a JSON access-log line (to a file here). Target: orc-info/bare >= 0.75. Both orc
servers log probe requests (ORC_ACCESS_LOG_PROBES=true), which orc leaves out by default.

Needs wrk (Debian: apt-get install -y wrk).

--pin runs the servers on the last CPU and wrk on the others, so that the server does not
share its CPU with wrk (steadier figures; not the default, which is plain wrk -t2 -c64).

Run: .venv/bin/python bench/health_rps.py [--rounds 20] [--duration 2] [--info-log] [--pin]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys

import benchlib

TARGET_RATIO = 0.85
TARGET_RATIO_INFO = 0.75
PATH = "/api/health"


def parse_wrk(out: str) -> dict[str, float]:
    """Requests/s, latency p50/p99 (ms) and error counts from ``wrk --latency`` output."""

    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError("cannot parse wrk output:\n" + out)
    result = {"rps": float(rps.group(1))}
    total = re.search(r"(\d+) requests in", out)
    result["requests"] = float(total.group(1)) if total else float("nan")
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.MULTILINE)
        result[key] = ms(m.group(1)) if m else float("nan")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result["non2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = float(sum(map(int, sock.groups()))) if sock else 0.0
    return result


def run_wrk(
    port: int,
    threads: int,
    connections: int,
    seconds: float,
    pids: list[int] | None = None,
    cpus: set[int] | None = None,
) -> dict[str, float]:
    """One wrk run (on ``cpus`` if given); with ``pids``, the CPU they used per request (us)."""
    pin = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
    argv = [
        *pin,
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        f"http://{benchlib.HOST}:{port}{PATH}",
    ]
    cpu_before = benchlib.cpu_seconds(pids or [])
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 30)
    cpu = benchlib.cpu_seconds(pids or []) - cpu_before
    result = parse_wrk(out.stdout)
    result["cpu_us"] = cpu / result["requests"] * 1e6 if pids else float("nan")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Many short rounds: a VM's CPU speed here changed by a third within seconds. Three runs
    # each of the same code: 20 rounds of 2 s gave orc/bare 0.93-1.04 (info 0.81-0.93), 5
    # rounds of 10 s 0.80-1.12 (info 0.67-0.93).
    parser.add_argument("--rounds", type=int, default=20, help="measurements of each (default 20)")
    parser.add_argument("--duration", type=float, default=2, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=5, help="warm-up seconds per server")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument(
        "--info-log", action="store_true", help="also measure orc at ORC_LOG_LEVEL=info"
    )
    parser.add_argument(
        "--pin", action="store_true", help="servers on the last CPU, wrk on the others"
    )
    args = parser.parse_args()
    server_cpus, wrk_cpus = benchlib.split_cpus() if args.pin else (None, None)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get update && apt-get install -y wrk")

    print(
        f"GET {PATH}: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, "
        f"{args.rounds} interleaved rounds, {args.warmup:g}s warm-up each"
        + (f", servers on CPU {server_cpus}, wrk on CPU {wrk_cpus}" if args.pin else "")
    )
    print(benchlib.load_note())
    with benchlib.temp_dir("orc-bench-rps-") as root:
        servers = {
            "orc": benchlib.orc_server(
                root / "orc", benchlib.free_port(), ["--workers", "1", "--no-worker"]
            ),
            "bare": benchlib.bare_sanic_server(root / "bare", benchlib.free_port()),
        }
        if args.info_log:
            servers["orc-info"] = benchlib.orc_server(
                root / "orc-info",
                benchlib.free_port(),
                ["--workers", "1", "--no-worker"],
                log_level="info",
            )
        for server in servers.values():
            server.cpus = server_cpus
            server.start()
        results: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        try:
            # The CPU figures cover every process of a server: orc's launcher and API child.
            trees = {}
            for name, server in servers.items():
                server.wait_healthy()
                trees[name] = [server.pid, *server.descendant_pids()]
                print(f"{name}: {' '.join(server.argv)}  (pids {trees[name]})")
            for name, server in servers.items():
                warm = run_wrk(
                    server.port, args.threads, args.connections, args.warmup, cpus=wrk_cpus
                )
                print(f"warm-up {name}: {warm['rps']:.0f} req/s")
            names = list(servers)
            for i in range(args.rounds):
                order = names if i % 2 == 0 else names[::-1]
                for name in order:
                    port = servers[name].port
                    r = run_wrk(
                        port, args.threads, args.connections, args.duration, trees[name], wrk_cpus
                    )
                    results[name].append(r)
                    errors = ""
                    if r["non2xx"] or r["socket_errors"]:
                        errors = f"  ! non-2xx {r['non2xx']:.0f}, socket errors "
                        errors += f"{r['socket_errors']:.0f}"
                    print(
                        f"round {i + 1} {name:>8}: {r['rps']:7.0f} req/s  "
                        f"server CPU {r['cpu_us']:5.0f} us/req  "
                        f"p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms{errors}",
                        flush=True,
                    )
                rps = {n: results[n][-1]["rps"] for n in names}
                print(f"round {i + 1} ratio orc/bare: {rps['orc'] / rps['bare']:.3f}")
        finally:
            for server in servers.values():
                server.stop()

    print()
    print(benchlib.load_note())
    medians = {n: statistics.median(r["rps"] for r in rs) for n, rs in results.items()}
    cpu = {n: statistics.median(r["cpu_us"] for r in rs) for n, rs in results.items()}
    for name, rs in results.items():
        print(
            f"{name:>8}: "
            + benchlib.summary([r["rps"] for r in rs], unit=" req/s", digits=0)
            + f"; server CPU median {cpu[name]:.0f} us/req"
        )
    ratio = medians["orc"] / medians["bare"]
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(f"ratio orc/bare (median req/s): {ratio:.3f}  target >= {TARGET_RATIO}: {verdict}")
    per_round = [o["rps"] / b["rps"] for o, b in zip(results["orc"], results["bare"], strict=True)]
    print("ratio per round: " + ", ".join(f"{x:.3f}" for x in per_round))
    # Less sensitive to other load on the machine: the server is CPU-bound, so its
    # throughput is about 1 / (CPU per request).
    print(f"ratio from server CPU per request (bare/orc): {cpu['bare'] / cpu['orc']:.3f}")
    if "orc-info" in medians:
        info_ratio = medians["orc-info"] / medians["bare"]
        verdict = "PASS" if info_ratio >= TARGET_RATIO_INFO else "FAIL"
        print(
            f"orc-info/bare: {info_ratio:.3f} (req/s), "
            f"{cpu['bare'] / cpu['orc-info']:.3f} (CPU per request)  "
            f"target >= {TARGET_RATIO_INFO}: {verdict}"
        )


if __name__ == "__main__":
    main()
