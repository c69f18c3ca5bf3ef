"""orc's own memory per concurrent run: RSS/PSS of orc's processes with 0 runs and with N runs.

``orc serve`` (API and job worker, ``ORC_MAX_CONCURRENT_RUNS`` raised to the largest N) on
SQLite (or ``--db postgres``). One trivial task runs first (the worker loads
claude-agent-sdk at its first turn: a one-time cost, shown apart). Then, for each N of
``--runs`` (default 2,4), N tasks are queued whose agent runs a long ``sleep`` through its Bash
tool; once the N sleeps are running, the memory of every process under ``orc serve`` is read
from /proc/PID/smaps_rollup, leaving out the agent (the Claude Code CLI and every process
below it), and the runs are cancelled. orc's processes are: the launcher, the API, the job
worker and one ``orc-agent-exec`` per run (the CLI's parent, which keeps the agent's
environment and process tree in check).

Per run = (orc with N runs - orc with 0 runs) / N, for RSS and PSS (target <= 30 MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from pathlib import Path

import benchlib
import orcbench
import psutil
import runlib
from memory import ProcMemory, measure_tree, report
from runlib import FakeAnthropic, bash, text, tool_calls

TARGET_MIB = 30.0
SLEEP_SECONDS = 110  # under the Bash tool's default timeout (120 s)
# Claude Code refuses a plain long ``sleep`` in its Bash tool.
SLEEP_COMMAND = f"python3 -c 'import time; time.sleep({SLEEP_SECONDS})'"


def is_agent(proc: psutil.Process, cli: str) -> bool:
    try:
        return proc.exe() == cli or Path(proc.cmdline()[0]).resolve() == Path(cli).resolve()
    except (psutil.Error, IndexError, OSError):
        return False


def orc_rows(server: benchlib.Server, cli: str) -> tuple[list[ProcMemory], int]:
    """Memory of orc's processes (the agents and what they started left out); how many
    agent processes were left out."""
    root = psutil.Process(server.pid)
    agents: set[int] = set()
    for proc in root.children(recursive=True):
        if is_agent(proc, cli):
            agents.add(proc.pid)
            agents.update(child.pid for child in proc.children(recursive=True))
    rows = [row for row in measure_tree(server.pid, "orc serve") if row.pid not in agents]
    for row in rows:
        with contextlib.suppress(psutil.Error):
            if any("orc-agent-exec" in part for part in psutil.Process(row.pid).cmdline()[:2]):
                row.role = "orc-agent-exec (the agent's launcher)"
    return rows, len(agents)


def sleeping_agents(server: benchlib.Server) -> int:
    count = 0
    for proc in psutil.Process(server.pid).children(recursive=True):
        try:
            if f"time.sleep({SLEEP_SECONDS})" in " ".join(proc.cmdline()[1:]):
                count += 1
        except psutil.Error:
            pass
    return count


def totals(rows: list[ProcMemory]) -> tuple[float, float]:
    return sum(r.rss for r in rows), sum(r.pss for r in rows)


async def run_to_end(orc: runlib.Orc, fake: FakeAnthropic, label: str) -> None:
    task_id = orc.create_task(label)
    fake.script(runlib.trivial_conversation(label), workdir=str(orc.workdir(task_id)))
    async with runlib.watching(orc.server.port) as watch:
        await asyncio.to_thread(orc.run_task, task_id)
        await watch.until(lambda: watch.final_states().get(task_id) == "completed", 120)


async def with_runs(
    orc: runlib.Orc, fake: FakeAnthropic, n: int, label: str, cli: str, settle: float
) -> list[ProcMemory]:
    """Memory of orc's processes while ``n`` runs wait on their agent's ``sleep``."""
    ids = [orc.create_task(f"{label} task {i}") for i in range(n)]
    for task_id in ids:
        replies = [
            tool_calls(bash(SLEEP_COMMAND, "Wait"), say=f"{label} {task_id}"),
            text('{"status": "complete", "summary": "waited"}'),
        ]
        fake.script(replies, workdir=str(orc.workdir(task_id)))
    async with runlib.watching(orc.server.port) as watch:
        for task_id in ids:
            await asyncio.to_thread(orc.run_task, task_id)
        deadline = time.monotonic() + 120
        while sleeping_agents(orc.server) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n} agents never all ran their sleep")
            await asyncio.sleep(0.2)
        await asyncio.sleep(settle)
        rows, agents = orc_rows(orc.server, cli)
        print(f"  ({agents} agent processes left out)")
        for task_id in ids:
            await asyncio.to_thread(orc.http.json, "POST", f"/api/tasks/{task_id}/cancel", {}, 202)
        ended = ("completed", "failed", "blocked", "paused")
        await watch.until(lambda: all(watch.final_states().get(t) in ended for t in ids), 120)
    return rows


async def bench(args: argparse.Namespace, root: Path, database_url: str | None) -> None:
    from orc.runs.agent import bundled_cli

    cli = str(Path(bundled_cli()).resolve())
    sizes = [int(n) for n in args.runs.split(",")]
    with (
        FakeAnthropic() as fake,
        runlib.orc_serve(root / "orc", fake, max(sizes), database_url=database_url) as orc,
    ):
        await asyncio.sleep(args.settle)
        cold = report("0 runs, before the first run", orc_rows(orc.server, cli)[0], None)
        await run_to_end(orc, fake, "warmup")
        await asyncio.sleep(args.settle)
        base_rows = orc_rows(orc.server, cli)[0]
        idle = [totals(base_rows)]
        report("0 runs, after one run (claude-agent-sdk loaded)", base_rows, None)
        per_run: dict[int, list[tuple[float, float]]] = {n: [] for n in sizes}
        from_cold: dict[int, list[float]] = {n: [] for n in sizes}
        for r in range(args.rounds):
            for n in sizes if r % 2 == 0 else sizes[::-1]:
                rows = await with_runs(orc, fake, n, f"r{r}n{n}", cli, args.settle)
                rss, pss = totals(rows)
                report(f"{n} runs (round {r + 1})", rows, None)
                await asyncio.sleep(args.settle)
                idle.append(totals(orc_rows(orc.server, cli)[0]))
                # Against the mean of the idle readings before and after.
                rss0 = (idle[-2][0] + idle[-1][0]) / 2
                pss0 = (idle[-2][1] + idle[-1][1]) / 2
                per_run[n].append(((rss - rss0) / n, (pss - pss0) / n))
                from_cold[n].append((rss - cold["rss"]) / n)
                print(
                    f"  per run: RSS {(rss - rss0) / n:.1f} MiB, PSS {(pss - pss0) / n:.1f} MiB "
                    f"(0 runs: RSS {rss0:.1f}, PSS {pss0:.1f})"
                )
    label = "SQLite" if database_url is None else "PostgreSQL"
    print()
    print(benchlib.load_note())
    print(f"0 runs, before any run: RSS {cold['rss']:.1f} MiB, PSS {cold['pss']:.1f} MiB")
    print(
        "0 runs, between rounds: RSS "
        + ", ".join(f"{rss:.1f}" for rss, _ in idle)
        + " MiB; PSS "
        + ", ".join(f"{pss:.1f}" for _, pss in idle)
    )
    for n, values in per_run.items():
        rss = statistics.median(v[0] for v in values)
        pss = statistics.median(v[1] for v in values)
        verdict = "met" if max(rss, pss) <= TARGET_MIB else "NOT met"
        print(
            f"{orcbench.SUMMARY_PREFIX}run_memory {label}, {n} runs: orc's own memory per run "
            f"RSS {rss:.1f} MiB, PSS {pss:.1f} MiB (target <= {TARGET_MIB:.0f}: {verdict})"
        )
    first = idle[0][0] - cold["rss"]
    print(
        f"{orcbench.SUMMARY_PREFIX}run_memory {label}: the first run's one-time cost (the "
        f"worker loads claude-agent-sdk) RSS {first:.1f} MiB; counted in, per run: "
        + ", ".join(f"{n} runs {statistics.median(v):.1f} MiB" for n, v in from_cold.items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="2,4", help="numbers of concurrent runs")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before each reading")
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--pg-url", default=orcbench.DEFAULT_PG_URL)
    runlib.run_on_each_database(parser.parse_args(), "orc-bench-runmem-", bench)


if __name__ == "__main__":
    main()
