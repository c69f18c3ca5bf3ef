"""Tasks: creation, changes and the state machine, each change with its outbox event."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from orc.db.models import Task, TaskPhase
from orc.errors import EXIT_USAGE, OrcError
from orc.outbox.events import change_transaction, emit

WEIGHTS = ("trivial", "small", "medium", "large")
STATUSES = ("created", "planned", "running", "paused", "blocked", "completed", "failed")
ACTIVE_STATUS = "running"

# action: (statuses it may start from, status it leads to)
ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "run": (("created", "planned", "blocked", "failed"), "running"),
    "pause": (("running",), "paused"),
    "resume": (("paused",), "running"),
    "complete": (("running", "paused"), "completed"),
    "fail": (("running", "paused", "blocked"), "failed"),
}
# Statuses a PATCH may set directly, and from where.
PATCHABLE_STATUSES: dict[str, tuple[str, ...]] = {
    "planned": ("created",),
    "blocked": ("running", "paused"),
}
_TASK_ID = re.compile(r"^TASK-(\d{1,9})$")


class TaskNotFound(OrcError):
    """No task has this id."""

    status = 404
    code = "task_not_found"
    exit_code = EXIT_USAGE

    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task {task_id}")


class TransitionNotAllowed(OrcError):
    """The task's status does not allow the requested change."""

    status = 409
    code = "transition_not_allowed"
    exit_code = EXIT_USAGE


def format_task_id(number: int) -> str:
    return f"TASK-{number:03d}"


def parse_task_id(text: str) -> int | None:
    """The number of a ``TASK-001`` id, or None when the text is not one."""
    match = _TASK_ID.match(text)
    return int(match.group(1)) if match else None


def canonical_task_id(text: str) -> str | None:
    """``TASK-001`` for any accepted spelling of it (``TASK-1``, ``TASK-0001``), else None."""
    number = parse_task_id(text)
    return None if number is None else format_task_id(number)


def task_dict(task: Task) -> dict[str, Any]:
    return {
        "id": format_task_id(task.number),
        "title": task.title,
        "description": task.description,
        "weight": task.weight,
        "status": task.status,
        "current_phase": task.current_phase,
        "created_by": task.created_by,
        "created_at": task.created_at.isoformat(),
        "updated_at": task.updated_at.isoformat(),
    }


def phase_dict(phase: TaskPhase) -> dict[str, Any]:
    return {
        "name": phase.name,
        "status": phase.status,
        "iterations": phase.iterations,
        "started_at": phase.started_at.isoformat() if phase.started_at else None,
        "finished_at": phase.finished_at.isoformat() if phase.finished_at else None,
    }


async def _locked_task(conn: BaseDBAsyncClient, number: int) -> Task:
    query = Task.filter(number=number).using_db(conn)
    if conn.capabilities.dialect == "postgres":
        query = query.select_for_update()
    task = await query.first()
    if task is None:
        raise TaskNotFound(format_task_id(number))
    return task


async def create_task(
    title: str, description: str = "", weight: str = "medium", created_by: str = ""
) -> dict[str, Any]:
    """Create a task (status created) and its task_created event."""
    async with change_transaction() as conn:
        task = await Task.create(
            title=title,
            description=description,
            weight=weight,
            status="created",
            created_by=created_by,
            using_db=conn,
        )
        data = task_dict(task)
        await emit(conn, "task_created", data["id"], data)
    return data


async def get_task(number: int) -> dict[str, Any]:
    """A task with its phases."""
    task = await Task.filter(number=number).first()
    if task is None:
        raise TaskNotFound(format_task_id(number))
    phases = await TaskPhase.filter(task_id=number).order_by("id")
    return {**task_dict(task), "phases": [phase_dict(p) for p in phases]}


async def list_tasks(
    page: int, limit: int, status: str | None = None, weight: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    """One page of tasks, newest first, and the total that match the filters."""
    query = Task.all()
    if status is not None:
        query = query.filter(status=status)
    if weight is not None:
        query = query.filter(weight=weight)
    total = await query.count()
    tasks = await query.order_by("-number").offset((page - 1) * limit).limit(limit)
    return [task_dict(t) for t in tasks], total


async def _enter_phase(conn: BaseDBAsyncClient, task: Task, name: str, now: datetime) -> TaskPhase:
    """Finish the current phase and start (or restart) ``name``."""
    await _finish_phase(conn, task, "completed", now)
    phase = await TaskPhase.filter(task_id=task.number, name=name).using_db(conn).first()
    if phase is None:
        phase = TaskPhase(task_id=task.number, name=name, iterations=0)
    phase.iterations += 1
    phase.status = "running"
    phase.started_at = now
    phase.finished_at = None
    await phase.save(using_db=conn)
    return phase


async def _finish_phase(
    conn: BaseDBAsyncClient, task: Task, status: str, now: datetime
) -> TaskPhase | None:
    if not task.current_phase:
        return None
    phase = await (
        TaskPhase.filter(task_id=task.number, name=task.current_phase, status="running")
        .using_db(conn)
        .first()
    )
    if phase is not None:
        phase.status = status
        phase.finished_at = now
        await phase.save(using_db=conn)
    return phase


async def update_task(number: int, changes: dict[str, Any]) -> dict[str, Any]:
    """Change title, description, weight, current_phase or (planned/blocked) status."""
    now = datetime.now(UTC)
    async with change_transaction() as conn:
        task = await _locked_task(conn, number)
        task_id = format_task_id(number)
        previous_status = task.status
        if "status" in changes and changes["status"] != task.status:
            allowed_from = PATCHABLE_STATUSES.get(changes["status"], ())
            if task.status not in allowed_from:
                raise TransitionNotAllowed(
                    f"{task_id} is {task.status}; status {changes['status']} can only be set "
                    f"from {' or '.join(allowed_from) or 'no status by PATCH'}"
                    + ("" if allowed_from else " (use the run/pause/resume/complete/fail actions)")
                )
        phase_event = None
        new_phase = changes.get("current_phase")
        if "current_phase" in changes and new_phase != task.current_phase:
            if new_phase is None:
                finished = await _finish_phase(conn, task, "completed", now)
                phase_event = phase_dict(finished) if finished else None
            else:
                phase_event = phase_dict(await _enter_phase(conn, task, new_phase, now))
        for field, value in changes.items():
            setattr(task, field, value)
        await task.save(using_db=conn)
        data = task_dict(task)
        await emit(conn, "task_updated", task_id, {**data, "changed": sorted(changes)})
        if task.status != previous_status:
            await emit(conn, "state", task_id, {"from": previous_status, "to": task.status})
        if phase_event is not None:
            await emit(conn, "phase", task_id, phase_event)
    return data


async def transition(number: int, action: str) -> dict[str, Any]:
    """Apply run/pause/resume/complete/fail, or raise TransitionNotAllowed."""
    allowed_from, target = ACTIONS[action]
    now = datetime.now(UTC)
    async with change_transaction() as conn:
        task = await _locked_task(conn, number)
        task_id = format_task_id(number)
        if task.status not in allowed_from:
            raise TransitionNotAllowed(
                f"cannot {action} {task_id}: it is {task.status}; "
                f"{action} is allowed from {', '.join(allowed_from)}"
            )
        previous = task.status
        finished = None
        if target in ("completed", "failed"):
            finished = await _finish_phase(conn, task, target, now)
        task.status = target
        await task.save(using_db=conn)
        data = task_dict(task)
        await emit(conn, "state", task_id, {"from": previous, "to": target, "action": action})
        if finished is not None:
            await emit(conn, "phase", task_id, phase_dict(finished))
    return data


async def delete_task(number: int) -> None:
    """Delete a task and its phases; its usage stays in the cost history."""
    async with change_transaction() as conn:
        task = await _locked_task(conn, number)
        await task.delete(using_db=conn)
        await emit(conn, "task_deleted", format_task_id(number), {"id": format_task_id(number)})
