"""A run's progress in the database: which phase is on, its iterations, what each produced.

A phase is ``completed`` only after its commit, so a run that resumes after a crash starts at
the first phase that is not: committed phases are never repeated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.expressions import F

from orc.db.models import Run, Task, TaskPhase
from orc.outbox.events import change_transaction, emit

PHASE_EVENT = "phase"


@dataclass(frozen=True)
class DonePhase:
    name: str
    summary: str
    artifact: str | None


def phase_event(phase: TaskPhase) -> dict[str, Any]:
    return {
        "name": phase.name,
        "status": phase.status,
        "iterations": phase.iterations,
        "started_at": phase.started_at.isoformat() if phase.started_at else None,
        "finished_at": phase.finished_at.isoformat() if phase.finished_at else None,
        "summary": phase.summary,
        "commit": phase.commit,
    }


async def completed_phases(task_number: int) -> dict[str, DonePhase]:
    rows = await TaskPhase.filter(task_id=task_number, status="completed")
    return {row.name: DonePhase(row.name, row.summary or "", row.artifact) for row in rows}


async def start_phase(task_number: int, run_id: int, name: str, session_id: str | None) -> None:
    """Make ``name`` the task's current phase (a fresh start, or a resume of it)."""
    now = datetime.now(UTC)
    async with change_transaction() as conn:
        phase = await TaskPhase.get_or_none(task_id=task_number, name=name, using_db=conn)
        if phase is None:
            phase = TaskPhase(task_id=task_number, name=name, iterations=0)
        if phase.status != "running":
            phase.started_at = now
        phase.status = "running"
        phase.finished_at = None
        await phase.save(using_db=conn)
        await Task.filter(number=task_number).using_db(conn).update(current_phase=name)
        await Run.filter(id=run_id).using_db(conn).update(phase=name, session_id=session_id)
        await emit(conn, PHASE_EVENT, f"TASK-{task_number:03d}", phase_event(phase))


async def count_iteration(task_number: int, run_id: int, name: str, iteration: int) -> None:
    async with change_transaction() as conn:
        await (
            TaskPhase.filter(task_id=task_number, name=name)
            .using_db(conn)
            .update(iterations=iteration)
        )
        await Run.filter(id=run_id).using_db(conn).update(iteration=iteration)


async def remember_session(run_id: int, session_id: str | None, cost_usd: float) -> None:
    """The phase's agent session (to resume it after a crash) and the agent's spend so far."""
    run = await Run.get(id=run_id)
    run.session_id = session_id
    run.cost_usd = (run.cost_usd or 0) + cost_usd
    await run.save(update_fields=["session_id", "cost_usd"])


async def finish_phase(
    task_number: int,
    name: str,
    status: str,
    summary: str,
    artifact: str | None = None,
    commit: str | None = None,
) -> None:
    now = datetime.now(UTC)
    async with change_transaction() as conn:
        phase = await TaskPhase.get(task_id=task_number, name=name, using_db=conn)
        phase.status = status
        phase.finished_at = now
        phase.summary = summary
        phase.artifact = artifact
        phase.commit = commit
        await phase.save(using_db=conn)
        await emit(conn, PHASE_EVENT, f"TASK-{task_number:03d}", phase_event(phase))


async def end_running_phase(task_number: int, status: str) -> None:
    """The phase a run was in when it failed ends with it (a new run starts that phase over)."""
    now = datetime.now(UTC)
    async with change_transaction() as conn:
        for phase in await TaskPhase.filter(task_id=task_number, status="running").using_db(conn):
            phase.status = status
            phase.finished_at = now
            await phase.save(using_db=conn, update_fields=["status", "finished_at"])
            await emit(conn, PHASE_EVENT, f"TASK-{task_number:03d}", phase_event(phase))


async def reopen_phases(task_number: int, names: tuple[str, ...]) -> None:
    """Send the task back through ``names`` (a review asked for changes)."""
    async with change_transaction() as conn:
        await (
            TaskPhase.filter(task_id=task_number, name__in=names)
            .using_db(conn)
            .update(status="pending")
        )
        await (
            Run.filter(task_id=task_number, status="running")
            .using_db(conn)
            .update(review_rounds=F("review_rounds") + 1)
        )


async def review_findings(task_number: int) -> str:
    """The last review's findings (kept when the review is reopened for another round)."""
    review = await TaskPhase.get_or_none(task_id=task_number, name="review")
    return (review.artifact or "") if review else ""
