"""Runs are claimed with a lease: never two workers on one run, a global limit, dead workers'
runs taken over. The race test uses real processes on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orc.db.models import Event, Run, Task
from orc.runs.claims import (
    LEASE_SECONDS,
    LeaseLost,
    claim_next_run,
    end_run,
    release_dead_local_leases,
    renew_lease,
    worker_owner,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


async def queue_runs(count: int, start: datetime = T0) -> list[int]:
    """``count`` tasks, each with a queued run, the first queued first."""
    ids = []
    for i in range(count):
        task = await Task.create(title=f"t{i}", weight="trivial", status="queued")
        run = await Run.create(task=task, status="queued", queued_at=start + timedelta(seconds=i))
        ids.append(run.id)
    return ids


async def task_status(run_id: int) -> tuple[str, str | None]:
    run = await Run.get(id=run_id).prefetch_related("task")
    return run.task.status, run.task.reason


async def test_the_oldest_run_is_claimed_first_and_the_limit_holds(store):
    first, second, third = await queue_runs(3)
    a = await claim_next_run("worker-a", max_running=2, now=T0)
    b = await claim_next_run("worker-b", max_running=2, now=T0)
    assert (a and a.run_id, b and b.run_id) == (first, second)
    assert not a.resumed
    assert await claim_next_run("worker-c", max_running=2, now=T0) is None
    assert await task_status(first) == ("running", None)

    await end_run(a, "completed", now=T0)
    c = await claim_next_run("worker-c", max_running=2, now=T0)
    assert c is not None and c.run_id == third
    assert await task_status(first) == ("completed", None)

    await end_run(b, "cancelled", "cancelled", now=T0)
    assert await task_status(second) == ("failed", "cancelled")
    states = [e.data for e in await Event.filter(event_type="state").order_by("id")]
    assert {"from": "queued", "to": "running", "action": "claimed"} in states
    assert {"from": "running", "to": "failed", "action": "cancelled", "reason": "cancelled"} in (
        states
    )


async def test_a_dead_workers_run_is_taken_over_after_its_lease_and_the_old_owner_stops(store):
    (run_id,) = await queue_runs(1)
    first = await claim_next_run("worker-a", max_running=2, now=T0)
    assert first is not None
    # Renewed in time: nobody else may take it.
    assert await renew_lease(first, now=T0 + timedelta(seconds=30)) is None
    soon = T0 + timedelta(seconds=30 + LEASE_SECONDS - 1)
    assert await claim_next_run("worker-b", max_running=2, now=soon) is None

    later = T0 + timedelta(seconds=30 + LEASE_SECONDS + 1)
    second = await claim_next_run("worker-b", max_running=2, now=later)
    assert second is not None and second.run_id == run_id and second.resumed
    with pytest.raises(LeaseLost):
        await renew_lease(first, now=later)
    with pytest.raises(LeaseLost):
        await end_run(first, "completed", now=later)
    await end_run(second, "completed", now=later)


async def test_a_persons_pause_or_cancel_reaches_the_worker_with_its_renewal(store):
    await queue_runs(1)
    claim = await claim_next_run("worker-a", max_running=1, now=T0)
    assert claim is not None
    await Run.filter(id=claim.run_id).update(control="cancel")
    assert await renew_lease(claim, now=T0) == "cancel"
    await end_run(claim, "paused", "paused by alice", now=T0)
    run = await Run.get(id=claim.run_id)
    assert (run.status, run.control, run.lease_owner, run.ended_at) == (
        "paused",
        None,
        None,
        None,
    )
    assert await task_status(claim.run_id) == ("paused", "paused by alice")


CLAIMER = """
import asyncio, json, sys
from orc.db import close_database, open_database
from orc.runs.claims import claim_next_run

async def main(url, owner, limit):
    await open_database(url)
    taken = []
    try:
        while True:
            claim = await claim_next_run(owner, max_running=limit)
            if claim is None:
                break
            taken.append(claim.run_id)
    finally:
        await close_database()
    print(json.dumps(taken))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def race(url: str, workers: int, limit: int) -> list[int]:
    """Run ``workers`` processes that each claim until nothing is left; the runs they took."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", CLAIMER, url, f"worker-{i}", str(limit), stdout=subprocess.PIPE
        )
        for i in range(workers)
    ]
    taken: list[int] = []
    for proc in procs:
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        taken.extend(json.loads(out))
    return taken


async def test_workers_racing_in_separate_processes_never_claim_one_run_twice(store):
    run_ids = await queue_runs(40)
    assert sorted(await race(store, workers=4, limit=1000)) == run_ids


async def test_the_limit_on_concurrent_runs_holds_across_processes(store):
    run_ids = await queue_runs(10)
    taken = await race(store, workers=4, limit=3)
    assert sorted(taken) == run_ids[:3]
    assert await Run.filter(status="queued").count() == 7


async def test_a_worker_with_a_dead_predecessors_pid_takes_its_run_back_at_once(store):
    """A restarted container starts its programs with the same pids: the new worker has the
    dead one's owner name. A run held in that name that it does not execute is taken back
    without waiting for the lease; one it executes is never taken (not even by itself)."""
    orphan, executing = await queue_runs(2)
    owner = "container-1:27"
    first = await claim_next_run(owner, max_running=2, now=T0)
    second = await claim_next_run(owner, max_running=2, now=T0)
    assert (first and first.run_id, second and second.run_id) == (orphan, executing)

    now = T0 + timedelta(seconds=1)
    assert await release_dead_local_leases("container-1", now, owner, {executing}) == 1
    later = now + timedelta(seconds=1)
    again = await claim_next_run(owner, max_running=2, now=later, exclude={executing})
    assert again is not None and (again.run_id, again.resumed) == (orphan, True)

    # Its lease run out while it is still being ended (e.g. on a full disk): not claimed.
    late = T0 + timedelta(seconds=LEASE_SECONDS + 1)
    assert await claim_next_run(owner, max_running=2, now=late, exclude={orphan, executing}) is None
    assert await claim_next_run("container-2:9", max_running=2, now=late) is not None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times: Linux")
async def test_a_run_held_under_a_pid_another_program_has_since_a_restart_is_taken_back(store):
    """A restarted container starts its programs with the killed ones' pids, not always in the
    same order (seen: the worker's old pid was the API's after `docker start`, and the run
    waited for its lease). The holder's start time tells it from the process that has its pid
    now; a holder that still runs keeps its run."""
    orphan, held = await queue_runs(2)
    live = worker_owner("container-1", os.getpid())  # this process: alive, its start recorded
    start = int(live.rpartition(":")[2])
    killed = f"container-1:{os.getpid()}:{start - 1}"  # an earlier process with the same pid
    for owner in (killed, live):
        assert await claim_next_run(owner, max_running=2, now=T0) is not None
    now = T0 + timedelta(seconds=1)
    restarted = "container-1:2:1"  # the worker of the restarted container
    assert await release_dead_local_leases("container-1", now, restarted) == 1
    again = await claim_next_run(restarted, max_running=3, now=now + timedelta(seconds=1))
    assert again is not None and (again.run_id, again.resumed) == (orphan, True)
    assert (await Run.get(id=held)).lease_owner == live
