"""Start-up time of ``orc serve``: from launching it to the first HTTP 200 on /api/health.

Two cases, interleaved run by run so that machine drift hits both alike:

* fresh:    a new, empty ORC_HOME each run, so the launcher applies every migration first;
* migrated: an ORC_HOME whose database ``orc migrate`` prepared once beforehand.

Each run also records when the launcher started its first child process (the held API
process and the process that migrates start together, once the launcher has read its
settings), the CPU time each of its processes used until the first 200 (steadier than wall
time on a shared machine), and how long ``orc serve`` took to exit after SIGTERM. Everything
is stopped (SIGTERM, wait, check that no child outlived it) after each run. One untimed
launch first warms the page cache and __pycache__ (skip it with --no-warmup).

Run: .venv/bin/python bench/startup.py [--runs 5] [--no-worker]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

import benchlib

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user + system CPU of ``pid``, of its children it has waited for), from /proc."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        stat = fh.read()
    fields = stat[stat.rfind(b")") + 2 :].split()  # fields[0] is the state (field 3)
    own = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    waited = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
    return own, waited


def cpu_at_first_200(server: benchlib.Server) -> dict[str, float]:
    """CPU each process of ``orc serve`` used until now: the launcher, the process it forked
    to check and migrate (waited for, so counted in the launcher's children), the API and the
    job worker. Wall time is mostly other work on a shared machine; these are not."""
    own, waited = cpu_seconds(server.pid)
    cpu = {"cpu launcher": own, "cpu migrate": waited, "cpu api": 0.0, "cpu worker": 0.0}
    for pid in server.descendant_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
            own, waited = cpu_seconds(pid)
        except OSError:
            continue
        key = "cpu worker" if b"worker" in argv else "cpu api"
        cpu[key] += own + waited
    cpu["cpu total"] = sum(cpu.values())
    return cpu


def one_run(data_dir: Path, extra: list[str], tag: str) -> dict[str, float]:
    """Launch, wait for the first 200, stop. Returns the phase times and CPU in seconds."""
    server = benchlib.orc_server(data_dir, benchlib.free_port(), extra, tag=tag)
    server.start()
    first_child: float | None = None
    deadline = time.perf_counter() + 60
    try:
        while True:
            now = time.perf_counter()
            if now > deadline:
                raise RuntimeError(f"not healthy after 60s:\n{server.log_tail()}")
            if server.exited():
                raise RuntimeError(f"orc serve exited early:\n{server.log_tail()}")
            if first_child is None and server.descendant_pids():
                first_child = now - server.started_at
            if benchlib.http_status(server.port) == 200:
                healthy = time.perf_counter() - server.started_at
                cpu = cpu_at_first_200(server)
                break
            time.sleep(0.005)
    finally:
        stop_seconds = server.stop()
    if first_child is None:  # the children appeared and answered within one poll
        first_child = healthy
    return {"healthy": healthy, "children": first_child, "stop": stop_seconds, **cpu}


def migrate(data_dir: Path) -> None:
    env = benchlib.clean_env(data_dir / "home", data_dir / "user")
    subprocess.run(
        [*benchlib.orc_command(), "migrate"],
        env=env,
        cwd=data_dir,
        check=True,
        capture_output=True,
    )


def show(label: str, runs: list[dict[str, float]]) -> None:
    print(f"\n{label}")
    for i, r in enumerate(runs, 1):
        print(
            f"  run {i}: first 200 after {r['healthy']:.3f}s "
            f"(children started at {r['children']:.3f}s, "
            f"API up {r['healthy'] - r['children']:.3f}s later); stop took {r['stop']:.3f}s"
        )
    print("  time to first 200:    " + benchlib.summary([r["healthy"] for r in runs]))
    print("  launcher start-up:    " + benchlib.summary([r["children"] for r in runs]))
    print(
        "  first child -> 200:   " + benchlib.summary([r["healthy"] - r["children"] for r in runs])
    )
    print("  SIGTERM -> exit:      " + benchlib.summary([r["stop"] for r in runs]))
    for key in ("cpu launcher", "cpu migrate", "cpu api", "cpu worker", "cpu total"):
        label = f"{key} to first 200:"
        print(f"  {label:<30}" + benchlib.summary([r[key] for r in runs], digits=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each case (default 5)")
    parser.add_argument("--no-worker", action="store_true", help="pass --no-worker to orc serve")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed first launch")
    args = parser.parse_args()
    extra = ["--no-worker"] if args.no_worker else []

    print(f"orc serve start-up: {args.runs} runs per case, command: {benchlib.orc_command()}")
    print("serve arguments: --host 127.0.0.1 --port <free> " + " ".join(extra))
    fresh: list[dict[str, float]] = []
    migrated: list[dict[str, float]] = []
    with benchlib.temp_dir("orc-bench-startup-") as root:
        if not args.no_warmup:
            r = one_run(root / "warmup", extra, tag="-warmup")
            print(f"warm-up (untimed, fresh ORC_HOME): first 200 after {r['healthy']:.3f}s")
        (root / "migrated").mkdir()
        migrate(root / "migrated")
        for i in range(args.runs):
            run_dir = root / f"fresh-{i}"
            run_dir.mkdir()
            fresh.append(one_run(run_dir, extra, tag=f"-fresh{i}"))
            migrated.append(one_run(root / "migrated", extra, tag=f"-migrated{i}"))
            print(
                f"round {i + 1}: fresh {fresh[-1]['healthy']:.3f}s, "
                f"migrated {migrated[-1]['healthy']:.3f}s",
                flush=True,
            )

    show("fresh ORC_HOME (includes applying all migrations):", fresh)
    show("already-migrated ORC_HOME:", migrated)
    cost = statistics.median(r["healthy"] for r in fresh) - statistics.median(
        r["healthy"] for r in migrated
    )
    print(f"\nmigrations cost (median first 200, fresh - migrated): {cost:.3f}s")


if __name__ == "__main__":
    main()
