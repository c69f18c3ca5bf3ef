"""What a person asks of a task's run: run, pause, resume, cancel.

A run that no worker holds changes at once; a running one gets the request through its
lease renewal (``Run.control``): cancel ends the agent within seconds, pause at the end of the
agent's current turn (the session is kept for the resume).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from orc.db.models import Run, TaskPhase
from orc.errors import EXIT_USAGE, OrcError
from orc.outbox.events import change_transaction
from orc.runs.claims import BLOCKED, CANCELLED, PAUSED, QUEUED, RUNNING, set_task_status
from orc.tasks.lifecycle import TransitionNotAllowed, locked_task
from orc.tasks.vocabulary import ACTIONS

# Task statuses from which a new run may be queued, and from which a run resumes.
RUNNABLE = ACTIONS["run"][0]
RESUMABLE = ACTIONS["resume"][0]


class RunRefused(TransitionNotAllowed):
    """The task's state does not allow this request now."""


class TaskHasNoProject(OrcError):
    status = 400
    code = "no_project"
    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class RunRequest:
    """The outcome of a request: the task's status now, and what happens next."""

    task_id: str
    status: str
    run_id: int | None
    message: str

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.task_id,
            "status": self.status,
            "run_id": self.run_id,
            "message": self.message,
        }


def _task_id(number: int) -> str:
    return f"TASK-{number:03d}"


async def _latest_run(conn: BaseDBAsyncClient, number: int) -> Run | None:
    return await Run.filter(task_id=number).using_db(conn).order_by("-id").first()


async def queue_run(number: int, requested_by: str) -> RunRequest:
    """Queue a new run of the task (its branch and committed phases carry over)."""
    async with change_transaction() as conn:
        task = await locked_task(conn, number)
        if task.status not in RUNNABLE:
            hint = " (resume it instead)" if task.status in RESUMABLE else ""
            raise RunRefused(f"cannot run {_task_id(number)}: it is {task.status}{hint}")
        if task.project_id is None:  # type: ignore[attr-defined]
            raise TaskHasNoProject(
                f"{_task_id(number)} belongs to no project; create tasks in a project "
                "(`orc project add PATH`)"
            )
        if task.status == "completed":
            # A new run starts the phases over; the branch keeps the earlier commits.
            await TaskPhase.filter(task_id=number).using_db(conn).update(status="pending")
        run = await Run.create(
            task_id=number,
            status=QUEUED,
            requested_by=requested_by,
            queued_at=datetime.now(UTC),
            using_db=conn,
        )
        await set_task_status(conn, task, "queued", "run")
    return RunRequest(_task_id(number), "queued", run.id, "queued; a worker starts it")


async def pause_run(number: int) -> RunRequest:
    async with change_transaction() as conn:
        task = await locked_task(conn, number)
        run = await _latest_run(conn, number)
        if run is None or run.status not in (QUEUED, RUNNING):
            raise RunRefused(f"cannot pause {_task_id(number)}: it is {task.status}")
        if run.status == QUEUED:
            run.status = PAUSED
            await run.save(using_db=conn, update_fields=["status"])
            await set_task_status(conn, task, "paused", "pause", "paused before it started")
            return RunRequest(_task_id(number), "paused", run.id, "paused")
        run.control = "pause"
        await run.save(using_db=conn, update_fields=["control"])
    return RunRequest(
        _task_id(number), task.status, run.id, "pause requested: after the agent's current turn"
    )


async def resume_run(number: int, note: str | None = None) -> RunRequest:
    """Queue a paused or blocked run again; ``note`` answers the agent's question."""
    async with change_transaction() as conn:
        task = await locked_task(conn, number)
        run = await _latest_run(conn, number)
        if task.status not in RESUMABLE or run is None or run.status not in (PAUSED, BLOCKED):
            raise RunRefused(
                f"cannot resume {_task_id(number)}: it is {task.status}; resume works on a "
                "paused or blocked task"
            )
        run.status = QUEUED
        run.note = note.strip() if note and note.strip() else None
        run.control = None
        await run.save(using_db=conn, update_fields=["status", "note", "control"])
        await set_task_status(conn, task, "queued", "resume")
    return RunRequest(_task_id(number), "queued", run.id, "queued; the run continues")


async def cancel_run(number: int) -> RunRequest:
    async with change_transaction() as conn:
        task = await locked_task(conn, number)
        run = await _latest_run(conn, number)
        if run is None or run.status not in (QUEUED, RUNNING, PAUSED, BLOCKED):
            raise RunRefused(f"cannot cancel {_task_id(number)}: it is {task.status}")
        if run.status == RUNNING:
            run.control = "cancel"
            await run.save(using_db=conn, update_fields=["control"])
            return RunRequest(
                _task_id(number), task.status, run.id, "cancel requested: the agent stops now"
            )
        run.status = CANCELLED
        run.ended_at = datetime.now(UTC)
        run.reason = "cancelled"
        await run.save(using_db=conn, update_fields=["status", "ended_at", "reason"])
        await set_task_status(conn, task, "failed", "cancel", "cancelled")
    return RunRequest(_task_id(number), "failed", run.id, "cancelled")


async def end_for_override(number: int, action: str) -> None:
    """An admin decides the outcome (complete/fail): the run ends here, and a worker that
    holds it finds its lease gone and stops the agent."""
    async with change_transaction() as conn:
        run = await _latest_run(conn, number)
        if run is None or run.status not in (QUEUED, RUNNING, PAUSED, BLOCKED):
            return
        run.status = "completed" if action == "complete" else "failed"
        run.reason = f"{action}d by an admin"
        run.ended_at = datetime.now(UTC)
        run.lease_owner = None
        run.lease_expires_at = None
        run.control = None
        await run.save(using_db=conn)
