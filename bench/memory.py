"""Idle memory of ``orc serve``: RSS, PSS and USS of the launcher and every process below it.

For each configuration a fresh ORC_HOME is used; the script waits for the first 200 on
/api/health, then ``--idle`` seconds (default 5), then reads /proc/PID/smaps_rollup of the
launcher and all its descendants. RSS counts shared pages (the interpreter, shared libraries)
once per process, so the RSS sum overstates what the service costs the machine; PSS divides
each shared page among the processes that map it, so the PSS sum is what they really use.
USS is what each process alone uses (what killing it would free).

Target: <= 128 MiB for ``orc serve`` with its job worker (the default configuration).
Also measured: ``--no-worker``, ``--workers 2``, and for reference a bare Sanic app
(bench/bare_sanic.py) and an idle bare Python interpreter, both from the same venv.

Run: .venv/bin/python bench/memory.py [--idle 5] [--no-reference]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import benchlib
import psutil

TARGET_MIB = 128.0
MIB = 1024 * 1024


@dataclass
class ProcMemory:
    pid: int
    ppid: int
    role: str
    rss: float  # MiB
    pss: float
    uss: float
    threads: int


def smaps_rollup(pid: int) -> dict[str, int]:
    """The fields of /proc/PID/smaps_rollup, in bytes."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return fields


def role_of(proc: psutil.Process, root_pid: int, root_label: str) -> str:
    """A short name for what the process is, from its command line and sockets."""
    cmd = proc.cmdline()
    text = " ".join(cmd)
    if proc.pid == root_pid:
        return root_label
    if "_api" in cmd:
        return "API (python -m orc _api)"
    if "worker" in cmd and "orc" in cmd:
        return "job worker (python -m orc worker)"
    if "resource_tracker" in text:
        return "multiprocessing resource tracker (Sanic, spawn)"
    if "spawn_main" in text:
        # Sanic's HTTP workers hold the listening TCP socket; its Manager() server does not.
        listening = any(c.status == psutil.CONN_LISTEN for c in proc.net_connections("tcp"))
        if listening:
            return "Sanic HTTP worker (spawned)"
        return "multiprocessing Manager server (Sanic worker state)"
    return text[:60]


def measure_tree(root_pid: int, root_label: str) -> list[ProcMemory]:
    root = psutil.Process(root_pid)
    procs = [root, *root.children(recursive=True)]
    rows = []
    for proc in procs:
        try:
            mem = smaps_rollup(proc.pid)
            role = role_of(proc, root_pid, root_label)
            threads = proc.num_threads()
            ppid = proc.ppid()
        except (OSError, psutil.Error):
            continue
        uss = mem.get("Private_Clean", 0) + mem.get("Private_Dirty", 0)
        rows.append(
            ProcMemory(
                proc.pid,
                ppid,
                role,
                mem.get("Rss", 0) / MIB,
                mem.get("Pss", 0) / MIB,
                uss / MIB,
                threads,
            )
        )
    return rows


def report(label: str, rows: list[ProcMemory], target: float | None) -> dict[str, float]:
    print(f"\n{label}")
    print(f"  {'pid':>7} {'ppid':>7} {'RSS MiB':>8} {'PSS MiB':>8} {'USS MiB':>8} {'thr':>4}  role")
    for r in rows:
        print(
            f"  {r.pid:>7} {r.ppid:>7} {r.rss:8.1f} {r.pss:8.1f} {r.uss:8.1f} {r.threads:>4}  "
            f"{r.role}"
        )
    totals = {
        "rss": sum(r.rss for r in rows),
        "pss": sum(r.pss for r in rows),
        "uss": sum(r.uss for r in rows),
    }
    line = (
        f"  {'total':>15} {totals['rss']:8.1f} {totals['pss']:8.1f} {totals['uss']:8.1f}"
        f"       {len(rows)} processes"
    )
    print(line)
    if target is not None:
        for key in ("rss", "pss"):
            total = totals[key]
            verdict = "PASS" if total <= target else "FAIL"
            print(f"  {key.upper()} total {total:.1f} MiB vs target <= {target:.0f} MiB: {verdict}")
    return totals


def measure_server(server: benchlib.Server, idle: float, root_label: str) -> list[ProcMemory]:
    server.start()
    try:
        server.wait_healthy()
        time.sleep(idle)
        return measure_tree(server.pid, root_label)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=5.0, help="idle seconds before reading")
    parser.add_argument(
        "--no-reference", action="store_true", help="skip bare Sanic and bare Python"
    )
    args = parser.parse_args()
    print(f"idle memory, read {args.idle:g}s after the first 200 on /api/health")
    print(benchlib.load_note())

    configs = [
        ("orc serve (API --workers 1 + job worker)", [], TARGET_MIB),
        ("orc serve --no-worker", ["--no-worker"], None),
        ("orc serve --workers 2 (with job worker)", ["--workers", "2"], None),
    ]
    summary = []
    with benchlib.temp_dir("orc-bench-memory-") as root:
        for i, (label, extra, target) in enumerate(configs):
            server = benchlib.orc_server(root / f"cfg{i}", benchlib.free_port(), extra)
            rows = measure_server(server, args.idle, "launcher (orc serve)")
            summary.append((label, report(label, rows, target)))
        if not args.no_reference:
            bare = benchlib.bare_sanic_server(root / "bare", benchlib.free_port())
            rows = measure_server(bare, args.idle, "bench/bare_sanic.py")
            summary.append(("reference: bare Sanic", report("reference: bare Sanic", rows, None)))
            env = benchlib.clean_env(root / "py" / "home", root / "py" / "user")
            python = benchlib.Server(
                "bare python",
                [benchlib.python_exe(), "-c", "import time; time.sleep(600)"],
                env,
                0,
                root / "py" / "python.log",
            ).start()
            try:
                time.sleep(1)
                rows = measure_tree(python.pid, "python -c 'import time; time.sleep(600)'")
            finally:
                python.stop()
            summary.append(("reference: idle python", report("reference: idle python", rows, None)))

    print("\nsummary (MiB)")
    print(f"  {'configuration':<42} {'RSS':>7} {'PSS':>7} {'USS':>7}")
    for label, t in summary:
        print(f"  {label:<42} {t['rss']:7.1f} {t['pss']:7.1f} {t['uss']:7.1f}")
    print(f"  target for the default configuration: <= {TARGET_MIB:.0f} MiB")


if __name__ == "__main__":
    main()
