"""Run overhead: 20 trivial tasks through orc against the same Claude Code invocations run directly.

orc: ``orc serve`` (API and job worker, SQLite) with ``ORC_MAX_CONCURRENT_RUNS=2``; the bench
creates the tasks, then queues them all (``POST /api/tasks/{id}/run``) and times from the
first request to the last task's ``completed`` state event on a ``/api/ws`` client. Each task
is one implement phase of four API calls (Write, Edit, Bash, the outcome), scripted on the
fake Anthropic API of tests/fake_anthropic.py (in this process) for the task's worktree.

Direct (the baseline): the same conversations, the same CLI (the one claude-agent-sdk
bundles), the same prompt and options, through ``claude_agent_sdk.query`` from this process,
two at a time, each in a git worktree of its own made before the clock starts and removed after
it stops (orc makes and removes its worktrees on the clock: that is part of what it adds).

Rounds alternate which side goes first; the ratio orc / direct is printed per round and for
the medians (target <= 1.15).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import benchlib
import run_timeline
import runlib
from runlib import FakeAnthropic

TARGET = 1.15


async def orc_round(
    orc: runlib.Orc, fake: FakeAnthropic, tasks: int, label: str, made: list[str] | None = None
) -> tuple[float, float, float]:
    """Seconds from queuing ``tasks`` new tasks to the last one completed, the CPU seconds
    orc's processes and the agents used meanwhile, and the whole machine's (the tasks' ids go
    to ``made``)."""
    ids = [orc.create_task(f"{label} task {i}") for i in range(tasks)]
    if made is not None:
        made.extend(ids)
    for task_id in ids:
        fake.script(runlib.trivial_conversation(task_id), workdir=str(orc.workdir(task_id)))
    async with runlib.watching(orc.server.port) as watch:

        def ended() -> bool:
            states = watch.final_states()
            return all(states.get(t) in ("completed", "failed", "blocked") for t in ids)

        cpu = runlib.tree_cpu_seconds(orc.server)
        machine = benchlib.machine_cpu_seconds()[0]
        by_process = runlib.cpu_by_process(orc.server)
        started = time.perf_counter()
        for task_id in ids:
            await asyncio.to_thread(orc.run_task, task_id)
        await watch.until(ended, timeout=60 + 30 * tasks)
        took = time.perf_counter() - started
        # The last agent may still be exiting: its CPU counts once its parent reaped it.
        await asyncio.sleep(1.0)
        cpu = runlib.tree_cpu_seconds(orc.server) - cpu
        machine = benchlib.machine_cpu_seconds()[0] - machine
        after = runlib.cpu_by_process(orc.server)
    if tasks > 1:
        print(
            "  orc's CPU: "
            + ", ".join(
                f"{role} {after[role][0] - own:.2f} s"
                + (f" (its children {after[role][1] - children:.2f} s)" if role == "worker" else "")
                for role, (own, children) in by_process.items()
                if role in after
            )
        )
    reasons = watch.reasons()
    failed = {
        t: f"{s}: {reasons.get(t)}"
        for t, s in watch.final_states().items()
        if t in ids and s != "completed"
    }
    if failed:
        raise RuntimeError(f"runs did not complete: {failed}")
    return took, cpu, machine


async def direct_round(
    root: Path, repo: Path, fake: FakeAnthropic, tasks: int, concurrency: int, label: str
) -> tuple[float, float, float]:
    """Seconds to run the same ``tasks`` invocations directly, ``concurrency`` at a time, the
    CPU seconds the runner (after its imports) and the agents used, and the whole machine's."""
    jobs = []
    for i in range(tasks):
        task_id = f"{label}-{i:03d}"
        cwd = runlib.add_worktree(repo, root / label / task_id, f"direct/{label}/{i}")
        fake.script(runlib.trivial_conversation(task_id), workdir=str(cwd))
        home = root / "agent-home" / label / task_id
        prompt = runlib.implement_prompt(task_id, f"{label} task {i}", repo)
        jobs.append(runlib.DirectJob(str(cwd), str(home), prompt))
    result = await asyncio.to_thread(runlib.run_direct_jobs, fake, jobs, concurrency)
    for job in jobs:  # off the clock
        runlib.remove_worktree(repo, Path(job.cwd))
    return result.took, result.cpu, result.machine


async def bench(args: argparse.Namespace, root: Path) -> None:
    with FakeAnthropic() as fake, runlib.orc_serve(root / "orc", fake, args.concurrency) as orc:
        # One untimed task on each side: page cache, the worker's first import of the SDK.
        if not args.no_warmup:
            await orc_round(orc, fake, 1, "warmup")
            await direct_round(root / "direct", orc.repo, fake, 1, 1, "warmup")
        timelines: list[dict] = []
        times: dict[str, list[float]] = {"orc": [], "direct": []}
        cpus: dict[str, list[float]] = {"orc": [], "direct": []}
        # The rest of the machine (other sessions' work) in CPUs, while each side ran: an
        # agent's CPU time for the same work grows with it (r = 0.85 in one run), as does its
        # wall time, so a side that met more of it looks slower and costlier.
        others: dict[str, list[float]] = {"orc": [], "direct": []}
        for n in range(args.rounds):
            order = ("orc", "direct") if n % 2 == 0 else ("direct", "orc")
            for side in order:
                label = f"r{n}"
                if side == "orc":
                    timed: list[str] = []
                    took, cpu, machine = await orc_round(orc, fake, args.tasks, label, timed)
                    numbers = [int(task_id.removeprefix("TASK-")) for task_id in timed]
                    timelines += run_timeline.run_timelines(
                        orc.home / "orc.db", numbers, args.concurrency
                    )
                else:
                    took, cpu, machine = await direct_round(
                        root / "direct", orc.repo, fake, args.tasks, args.concurrency, label
                    )
                times[side].append(took)
                cpus[side].append(cpu)
                others[side].append(max(0.0, machine - cpu) / took)
                print(
                    f"round {n + 1} {side:6s}: {took:7.2f} s wall, {cpu:7.2f} s CPU, "
                    f"the rest of the machine {others[side][-1]:.2f} CPUs",
                    flush=True,
                )
            wall = times["orc"][-1] / times["direct"][-1]
            cpu = cpus["orc"][-1] / cpus["direct"][-1]
            print(f"round {n + 1} ratio orc/direct: wall {wall:.3f}, CPU {cpu:.3f}", flush=True)
        unscripted = [r for r in fake.message_requests if r.answer == "unscripted"]
        if unscripted:
            print(f"  ! {len(unscripted)} requests found no scripted reply")
    orc_median = statistics.median(times["orc"])
    direct_median = statistics.median(times["direct"])
    ratio = orc_median / direct_median
    cpu_orc, cpu_direct = statistics.median(cpus["orc"]), statistics.median(cpus["direct"])
    print()
    print(benchlib.load_note())
    for side in ("orc", "direct"):
        print(f"{side:6s} wall {benchlib.summary(times[side], ' s', 2)}")
        print(f"{side:6s} CPU  {benchlib.summary(cpus[side], ' s', 2)}")
        print(f"{side:6s} rest {benchlib.summary(others[side], ' CPUs', 2)} (other work)")
    print(f"orc, where a run's time goes ({len(timelines)} runs, orc's own time stamps):")
    print("\n".join(run_timeline.timeline_lines(timelines)))
    extra_cpu = (cpu_orc - cpu_direct) / args.tasks
    print(f"orc's CPU per run beyond the agent's: {extra_cpu:.3f} s")
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(
        f"= run_overhead: {args.tasks} trivial tasks, {args.concurrency} at once: orc "
        f"{orc_median:.2f} s, direct {direct_median:.2f} s: wall ratio {ratio:.3f} "
        f"(target <= {TARGET}: {verdict}); CPU {cpu_orc:.1f} vs {cpu_direct:.1f} s: "
        f"ratio {cpu_orc / cpu_direct:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-warmup", action="store_true")
    args = parser.parse_args()
    print(benchlib.load_note())
    with benchlib.temp_dir("orc-bench-runs-") as root:
        asyncio.run(bench(args, root))


if __name__ == "__main__":
    main()
