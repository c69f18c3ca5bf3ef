"""What a person looks at: a task's branch diff and where its run stands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tortoise.functions import Sum

from orc.db.models import Run, Task, UsageEvent
from orc.errors import EXIT_USAGE, OrcError
from orc.runs.workspace import (
    BranchDiff,
    Workspace,
    branch_diff,
    branch_name,
    branch_repository,
    worktree_path,
)
from orc.tasks.lifecycle import TaskNotFound

ENDED = ("completed", "failed", "cancelled")


class NoBranch(OrcError):
    """The task has not started a branch yet."""

    status = 404
    code = "no_branch"
    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class RunStatus:
    """A task's latest run as a status line shows it."""

    task_id: str
    task_status: str
    reason: str | None
    run_id: int | None
    run_status: str | None
    phase: str | None
    iteration: int
    total_tokens: int
    cost_usd: float

    @property
    def ended(self) -> bool:
        return self.run_status is None or self.run_status in (*ENDED, "paused", "blocked")

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.task_id,
            "status": self.task_status,
            "reason": self.reason,
            "run_id": self.run_id,
            "run_status": self.run_status,
            "phase": self.phase,
            "iteration": self.iteration,
            "total_tokens": self.total_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


async def run_status(number: int) -> RunStatus:
    task = await Task.get_or_none(number=number)
    if task is None:
        raise TaskNotFound(f"TASK-{number:03d}")
    run = await Run.filter(task_id=number).order_by("-id").first()
    tokens = (
        await UsageEvent.filter(task_number=number)
        .annotate(
            i=Sum("input_tokens"),
            o=Sum("output_tokens"),
            r=Sum("cache_read_tokens"),
            w=Sum("cache_write_tokens"),
        )
        .first()
        .values_list("i", "o", "r", "w")
    )
    total = sum(int(value or 0) for value in (tokens or ()))
    spent = sum(r.cost_usd or 0.0 for r in await Run.filter(task_id=number))
    return RunStatus(
        task_id=f"TASK-{number:03d}",
        task_status=task.status,
        reason=task.reason,
        run_id=run.id if run else None,
        run_status=run.status if run else None,
        phase=run.phase if run else None,
        iteration=run.iteration if run else 0,
        total_tokens=total,
        cost_usd=spent,
    )


async def task_diff(number: int, home: Path) -> BranchDiff:
    """The task's branch against the commit it started from."""
    task = await Task.get_or_none(number=number).prefetch_related("project")
    task_id = f"TASK-{number:03d}"
    if task is None:
        raise TaskNotFound(task_id)
    if task.project is None or not task.base_commit:
        raise NoBranch(f"{task_id} has no branch yet; it gets one when it first runs")
    project = Path(task.project.path)
    repository, cloned = branch_repository(project, task.project.name, home)
    workspace = Workspace(
        worktree_path(home, task.project.name, task_id),
        branch_name(task_id),
        task.base_commit,
        repository,
        cloned,
    )
    return await branch_diff(workspace)
