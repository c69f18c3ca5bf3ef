"""Tasks: creation, changes and the state machine, each change with its outbox event."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Self

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.queryset import QuerySet

from orc.db.models import Project, Task, TaskPhase
from orc.db.sql import as_datetime, fetch, snapshot_transaction
from orc.errors import EXIT_USAGE, OrcError
from orc.outbox.events import change_transaction, emit
from orc.tasks.counts import count_tasks
from orc.tasks.vocabulary import ACTIONS, DEFAULT_WEIGHT, PATCHABLE_STATUSES

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


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# The task's columns a TaskInfo shows (with its project's name, from the project table).
_COLUMNS = (
    "number",
    "title",
    "description",
    "weight",
    "status",
    "current_phase",
    "created_by",
    "created_at",
    "updated_at",
    "base_ref",
    "base_commit",
    "budget_usd",
    "reason",
)
# Those of them that TaskInfo holds under the same name, as stored (of_row converts the rest).
_AS_STORED = tuple(
    c for c in _COLUMNS if c not in ("number", "created_at", "updated_at", "base_ref")
)


@dataclass(frozen=True)
class TaskInfo:
    """A task as the API, the CLI and its events show it."""

    number: int
    title: str
    description: str
    weight: str
    status: str
    current_phase: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    project: str | None = None
    base: str | None = None
    base_commit: str | None = None
    budget_usd: float | None = None
    reason: str | None = None

    @classmethod
    def of(cls, task: Task, project: str | None = None) -> Self:
        """``project`` names the task's project (callers that fetched it pass its name)."""
        return cls.of_row(
            {**{column: getattr(task, column) for column in _COLUMNS}, "project_name": project}
        )

    @classmethod
    def of_row(cls, row: Any) -> Self:
        """From the task's ``_COLUMNS`` and its ``project_name`` (a row of ``_LIST_SQL``)."""
        return cls(
            number=int(row["number"]),
            created_at=as_datetime(row["created_at"]),
            updated_at=as_datetime(row["updated_at"]),
            project=row["project_name"],
            base=row["base_ref"],
            **{name: row[name] for name in _AS_STORED},
        )

    @property
    def id(self) -> str:
        return format_task_id(self.number)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "weight": self.weight,
            "status": self.status,
            "current_phase": self.current_phase,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "project": self.project,
            "branch": f"orc/{self.id}" if self.base_commit else None,
            "base": self.base,
            "base_commit": self.base_commit,
            "budget_usd": self.budget_usd,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class PhaseInfo:
    """One phase of a task: how often it ran, when it last started and finished."""

    name: str
    status: str
    iterations: int
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, phase: TaskPhase) -> PhaseInfo:
        return cls(phase.name, phase.status, phase.iterations, phase.started_at, phase.finished_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "iterations": self.iterations,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }


@dataclass(frozen=True)
class TaskDetail(TaskInfo):
    """A task with its phases, oldest first."""

    phases: tuple[PhaseInfo, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "phases": [phase.to_json() for phase in self.phases]}


async def locked_task(conn: BaseDBAsyncClient, number: int) -> Task:
    """The task, locked for the rest of the change transaction (PostgreSQL: FOR UPDATE)."""
    query = Task.filter(number=number).using_db(conn)
    if conn.capabilities.dialect == "postgres":
        query = query.select_for_update()
    task = await query.first()
    if task is None:
        raise TaskNotFound(format_task_id(number))
    return task


async def create_task(
    title: str,
    description: str = "",
    weight: str = DEFAULT_WEIGHT,
    created_by: str = "",
    project: Project | None = None,
    base: str | None = None,
    budget_usd: float | None = None,
) -> TaskInfo:
    """Create a task (status created) in ``project`` and its task_created event."""
    async with change_transaction() as conn:
        task = await Task.create(
            title=title,
            description=description,
            weight=weight,
            status="created",
            created_by=created_by,
            project=project,
            base_ref=base,
            budget_usd=budget_usd,
            using_db=conn,
        )
        info = TaskInfo.of(task, project.name if project else None)
        await emit(conn, "task_created", info.id, info.to_json())
    return info


async def get_task(number: int) -> TaskDetail:
    """A task with its phases."""
    task = await Task.filter(number=number).select_related("project").first()
    if task is None:
        raise TaskNotFound(format_task_id(number))
    phases = await TaskPhase.filter(task_id=number).order_by("id")
    detail = TaskDetail.of(task, _project_name(task))
    return replace(detail, phases=tuple(PhaseInfo.of(p) for p in phases))


@dataclass(frozen=True)
class TaskPage:
    """One page of the task list, the total that match its filters, and the next page's cursor."""

    items: list[TaskInfo]
    total: int
    # The number below which the next page starts (None: this is the last page).
    next_before: int | None


# The task list's rows in one query with their project's name, read without a model each:
# every page of the list (and the dashboard's reload after each task event) asks.
_LIST_SQL = (
    f"SELECT {', '.join(f't.{column}' for column in _COLUMNS)}, p.name AS project_name "  # noqa: S608
    "FROM task t LEFT JOIN project p ON p.id = t.project_id"
)


async def list_tasks(
    limit: int,
    status: str | None = None,
    weight: str | None = None,
    *,
    page: int = 1,
    before: int | None = None,
) -> TaskPage:
    """Tasks newest first: those numbered below ``before`` (a keyset page, as cheap at the end
    as at the start), else page ``page`` (an OFFSET: deeper pages read more)."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("status", status), ("weight", weight)):
        if value is not None:
            where.append(f"t.{column} = ?")
            args.append(value)
    async with snapshot_transaction() as conn:
        total = await count_tasks(conn, status, weight)
        if before is not None:
            where.append("t.number < ?")
            args.append(before)
        elif page > 1:
            # The numbers first (along the filter's index, no row read for the skipped tasks,
            # no project joined to them), then their rows.
            query = Task.filter(**{k: v for k, v in (("status", status), ("weight", weight)) if v})
            numbers = await _page_numbers(query.using_db(conn), (page - 1) * limit, limit, total)
            if not numbers:
                return TaskPage([], total, None)
            where = [f"t.number IN ({', '.join('?' for _ in numbers)})"]
            args = list(numbers)
        condition = f" WHERE {' AND '.join(where)}" if where else ""
        # One more than a page: whether a next page exists, without counting.
        rows = await fetch(
            conn, f"{_LIST_SQL}{condition} ORDER BY t.number DESC LIMIT ?", [*args, limit + 1]
        )
    items = [TaskInfo.of_row(row) for row in rows[:limit]]
    next_before = items[-1].number if len(rows) > limit else None
    return TaskPage(items, total, next_before)


async def _page_numbers(query: QuerySet[Task], skip: int, limit: int, total: int) -> list[int]:
    """The numbers of the page after the ``skip`` newest tasks, and of the task after it.

    From whichever end is nearer: ``total`` (task_count, in the same snapshot) says where the
    page lies from the oldest task, so the last pages skip few entries, not all the others.
    """
    if skip >= total:
        return []
    if skip <= total // 2:
        found = query.order_by("-number").offset(skip).limit(limit + 1)
    else:
        after_page = max(0, total - skip - limit - 1)
        found = query.order_by("number").offset(after_page).limit(total - skip - after_page)
    numbers: list[Any] = await found.values_list("number", flat=True)
    return [int(number) for number in numbers]


async def _project_of(conn: BaseDBAsyncClient, task: Task) -> str | None:
    project_id = task.project_id  # type: ignore[attr-defined]
    if project_id is None:
        return None
    project = await Project.get_or_none(id=project_id, using_db=conn)
    return project.name if project else None


def _project_name(task: Task) -> str | None:
    """The name of a task's project when the query fetched it (select_related)."""
    project = task.project if task.project_id is not None else None  # type: ignore[attr-defined]
    return project.name if isinstance(project, Project) else None


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


async def update_task(number: int, changes: dict[str, Any]) -> TaskInfo:
    """Change title, description, weight, current_phase or (planned/blocked) status."""
    now = datetime.now(UTC)
    async with change_transaction() as conn:
        task = await locked_task(conn, number)
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
                phase_event = PhaseInfo.of(finished).to_json() if finished else None
            else:
                phase_event = PhaseInfo.of(await _enter_phase(conn, task, new_phase, now)).to_json()
        for field, value in changes.items():
            setattr(task, field, value)
        await task.save(using_db=conn)
        info = TaskInfo.of(task, await _project_of(conn, task))
        await emit(conn, "task_updated", task_id, {**info.to_json(), "changed": sorted(changes)})
        if task.status != previous_status:
            await emit(conn, "state", task_id, {"from": previous_status, "to": task.status})
        if phase_event is not None:
            await emit(conn, "phase", task_id, phase_event)
    return info


async def transition(number: int, action: str) -> TaskInfo:
    """Apply run/pause/resume/complete/fail, or raise TransitionNotAllowed."""
    allowed_from, target = ACTIONS[action]
    now = datetime.now(UTC)
    async with change_transaction() as conn:
        task = await locked_task(conn, number)
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
        info = TaskInfo.of(task, await _project_of(conn, task))
        await emit(conn, "state", task_id, {"from": previous, "to": target, "action": action})
        if finished is not None:
            await emit(conn, "phase", task_id, PhaseInfo.of(finished).to_json())
    return info


async def delete_task(number: int) -> None:
    """Delete a task and its phases; its usage stays in the cost history."""
    async with change_transaction() as conn:
        task = await locked_task(conn, number)
        await task.delete(using_db=conn)
        await emit(conn, "task_deleted", format_task_id(number), {"id": format_task_id(number)})
