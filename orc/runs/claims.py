"""Which worker runs which task: runs are claimed in the database with a lease.

A worker claims the oldest queued run (or one whose lease ran out: its worker died) and renews
the lease while the agent works. Claims, renewals and endings happen in change transactions,
which are serialised (SQLite's one writer; a PostgreSQL advisory lock), so two workers, in one
container or on replicas sharing a PostgreSQL, never hold the same run, and the limit on
concurrent runs holds across all of them. A worker that finds its lease gone stops its agent.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from orc.db.models import Run, Task
from orc.errors import EXIT_FAILED, OrcError
from orc.outbox.events import change_transaction, emit
from orc.runs.agent_exec import stat_fields
from orc.runs.phase_records import stop_running_phase

LEASE_SECONDS = 60.0
# Run statuses; a run's task mirrors them (cancelled leaves the task failed, reason cancelled).
QUEUED, RUNNING, PAUSED, BLOCKED = "queued", "running", "paused", "blocked"
COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"
ENDED = (COMPLETED, FAILED, CANCELLED)
TASK_STATUS_OF_RUN = {
    QUEUED: "queued",
    RUNNING: "running",
    PAUSED: "paused",
    BLOCKED: "blocked",
    COMPLETED: "completed",
    FAILED: "failed",
    CANCELLED: "failed",
}


class LeaseLost(OrcError):
    """This worker no longer holds the run (its lease ran out and another worker took it)."""

    status = 409
    code = "lease_lost"
    exit_code = EXIT_FAILED

    def __init__(self, run_id: int) -> None:
        super().__init__(f"run {run_id} is no longer held by this worker")


@dataclass(frozen=True)
class Claim:
    """A run this worker now holds."""

    run_id: int
    task_number: int
    owner: str
    # The run was started before (by a worker that died, or before a pause): resume it.
    resumed: bool


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


async def set_task_status(
    conn: BaseDBAsyncClient, task: Task | int, status: str, action: str, reason: str | None = None
) -> None:
    """Give the task ``status`` (and its reason) with its ``state`` event, in ``conn``'s change."""
    if isinstance(task, int):
        task = await Task.get(number=task, using_db=conn)
    number = task.number
    previous = task.status
    task.status = status
    task.reason = reason
    await task.save(using_db=conn, update_fields=["status", "reason", "updated_at"])
    if status not in ("queued", "running"):
        await stop_running_phase(conn, number, status)
    task_id = f"TASK-{number:03d}"
    data: dict[str, object] = {"from": previous, "to": status, "action": action}
    if reason:
        data["reason"] = reason
    await emit(conn, "state", task_id, data)


def _claimable(now: datetime, exclude: Collection[int]) -> QuerySet[Run]:
    """Queued runs, and runs whose lease ran out (their worker died), but not ``exclude``."""
    claimable = Run.filter(Q(status=QUEUED) | Q(status=RUNNING, lease_expires_at__lt=now))
    return claimable.exclude(id__in=list(exclude)) if exclude else claimable


async def has_claimable_run(now: datetime | None = None, exclude: Collection[int] = ()) -> bool:
    """Whether a run waits to be claimed (a read: no change lock)."""
    return await _claimable(_now(now), exclude).exists()


async def claim_next_run(
    owner: str, max_running: int, now: datetime | None = None, exclude: Collection[int] = ()
) -> Claim | None:
    """Take the oldest claimable run (not one of ``exclude``) if fewer than ``max_running``
    runs are held anywhere."""
    now = _now(now)
    async with change_transaction() as conn:
        live = await Run.filter(status=RUNNING, lease_expires_at__gte=now).using_db(conn).count()
        if live >= max_running:
            return None
        run = await _claimable(now, exclude).using_db(conn).order_by("queued_at", "id").first()
        if run is None:
            return None
        resumed = run.started_at is not None
        run.status = RUNNING
        run.lease_owner = owner
        run.lease_expires_at = now + timedelta(seconds=LEASE_SECONDS)
        run.started_at = run.started_at or now
        await run.save(using_db=conn)
        await set_task_status(conn, run.task_id, "running", "claimed")  # type: ignore[attr-defined]
        return Claim(run.id, run.task_id, owner, resumed)  # type: ignore[attr-defined]


async def renew_lease(claim: Claim, now: datetime | None = None) -> str | None:
    """Extend the lease; returns a person's pending request (``pause``/``cancel``) if any.

    Raises ``LeaseLost`` when another worker holds the run now or it ended meanwhile.
    """
    now = _now(now)
    async with change_transaction() as conn:
        run = await Run.get_or_none(id=claim.run_id, using_db=conn)
        if run is None or run.status != RUNNING or run.lease_owner != claim.owner:
            raise LeaseLost(claim.run_id)
        run.lease_expires_at = now + timedelta(seconds=LEASE_SECONDS)
        await run.save(using_db=conn, update_fields=["lease_expires_at"])
        return run.control


async def end_run(
    claim: Claim, status: str, reason: str | None = None, now: datetime | None = None
) -> None:
    """Give the run up with ``status`` (paused, blocked or an ending), the task following it."""
    now = _now(now)
    async with change_transaction() as conn:
        run = await Run.get_or_none(id=claim.run_id, using_db=conn)
        if run is None or run.status != RUNNING or run.lease_owner != claim.owner:
            raise LeaseLost(claim.run_id)
        run.status = status
        run.reason = reason
        run.control = None
        run.lease_owner = None
        run.lease_expires_at = None
        if status in ENDED:
            run.ended_at = now
        await run.save(using_db=conn)
        await set_task_status(conn, claim.task_number, TASK_STATUS_OF_RUN[status], status, reason)


async def requeue_run(claim: Claim, reason: str) -> None:
    """Hand a run back to the queue (this worker is stopping); the next worker resumes it."""
    async with change_transaction() as conn:
        run = await Run.get_or_none(id=claim.run_id, using_db=conn)
        if run is None or run.status != RUNNING or run.lease_owner != claim.owner:
            return
        run.status = QUEUED
        run.lease_owner = None
        run.lease_expires_at = None
        await run.save(using_db=conn)
        await set_task_status(conn, claim.task_number, "queued", "requeued", reason)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, /proc's ``starttime``); None where
    the system does not tell (not Linux) or the process is gone."""
    fields = stat_fields(pid)
    return fields[19].decode() if fields is not None and len(fields) > 19 else None


def worker_owner(hostname: str, pid: int) -> str:
    """The lease owner name of worker process ``pid``: ``hostname:pid:start``.

    The start time tells the holder from another process that got its pid later: a restarted
    container starts its programs with pids of the killed ones, but in another order."""
    start = process_start(pid)
    return f"{hostname}:{pid}" if start is None else f"{hostname}:{pid}:{start}"


def _holder_alive(holder: str) -> bool:
    """Whether the worker named ``holder`` (of this host) still runs; an unknown name does."""
    pid, _, start = holder.partition(":")[2].partition(":")
    if not pid.isdigit():
        return True
    if not _alive(int(pid)):
        return False
    return not start or process_start(int(pid)) in (None, start)


async def release_dead_local_leases(
    hostname: str,
    now: datetime | None = None,
    owner: str | None = None,
    executing: Collection[int] = (),
) -> int:
    """Runs held by workers of this host that are gone (kill -9, a crash) become claimable at
    once instead of after their lease; how many. Owners are ``worker_owner()``'s
    ``hostname:pid:start``: a process that has the holder's pid now, but started later, is not
    the holder. A run held in the name of ``owner`` (the caller) that it is not ``executing``
    was held by an earlier process of the same name (where start times are unknown)."""
    now = _now(now)
    held = await Run.filter(status=RUNNING, lease_owner__startswith=f"{hostname}:").values_list(
        "id", "lease_owner"
    )
    dead = [
        (run_id, holder)
        for run_id, holder in held
        if (holder == owner and run_id not in executing)
        or (holder != owner and not _holder_alive(str(holder)))
    ]
    released = 0
    for run_id, holder in dead:
        async with change_transaction() as conn:
            released += await (
                Run.filter(id=run_id, status=RUNNING, lease_owner=holder)
                .using_db(conn)
                .update(lease_expires_at=now)
            )
    return released
