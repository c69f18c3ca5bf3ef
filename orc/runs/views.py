"""What a person looks at: a task's branch diff, its phases, and where its run stands."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tortoise.functions import Sum

from orc.db.models import Run, Task, TaskPhase, UsageEvent
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
from orc.usage.pricing import PriceList
from orc.usage.recording import task_usage

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
    branch: str | None = None
    fetch_hint: str | None = None
    phases: tuple[PhaseView, ...] = ()

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
            "branch": self.branch,
            "fetch_hint": self.fetch_hint,
            "phases": [phase.to_json() for phase in self.phases],
        }


@dataclass(frozen=True)
class PhaseView:
    """One phase of a task as its page shows it: how it went, how long, what it spent."""

    name: str
    status: str
    iterations: int
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    total_tokens: int
    cost_usd: float
    summary: str | None
    commit: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "iterations": self.iterations,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_seconds": self.duration_seconds,
            "total_tokens": self.total_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "summary": self.summary,
            "commit": self.commit,
        }


def _duration(phase: TaskPhase, now: datetime) -> float | None:
    """Its last run's length: to its end, or to now while it runs."""
    if phase.started_at is None:
        return None
    end = phase.finished_at or (now if phase.status == "running" else None)
    return round((end - phase.started_at).total_seconds(), 1) if end else None


async def task_phases(number: int, prices: PriceList) -> tuple[PhaseView, ...]:
    """The task's phases in the order they first ran, with their tokens and cost."""
    usage = await task_usage(number, prices)
    tokens: dict[str, int] = defaultdict(int)
    cost: dict[str, float] = defaultdict(float)
    for line in usage.by_phase_and_model:
        tokens[line.phase] += sum(line.tokens.values())
        cost[line.phase] += line.cost_usd
    now = datetime.now(UTC)
    return tuple(
        PhaseView(
            phase.name,
            phase.status,
            phase.iterations,
            phase.started_at,
            phase.finished_at,
            _duration(phase, now),
            tokens[phase.name],
            cost[phase.name],
            phase.summary,
            phase.commit,
        )
        for phase in await TaskPhase.filter(task_id=number).order_by("id")
    )


def _workspace(task: Task, home: Path) -> Workspace | None:
    """Where the task's branch lives (None before its first run); ``task.project`` fetched."""
    if task.project is None or not task.base_commit:
        return None
    task_id = f"TASK-{task.number:03d}"
    repository, cloned = branch_repository(Path(task.project.path), task.project.name, home)
    return Workspace(
        worktree_path(home, task.project.name, task_id),
        branch_name(task_id),
        task.base_commit,
        repository,
        cloned,
    )


def fetch_hint(workspace: Workspace | None) -> str | None:
    """How to get the branch when it lives in orc's clone (a read-only project), else None."""
    return workspace.fetch_hint() if workspace is not None and workspace.cloned else None


async def run_status(
    number: int, prices: PriceList | None = None, home: Path | None = None
) -> RunStatus:
    """The latest run; with ``prices`` its phases too, with ``home`` where its branch is."""
    task = await Task.get_or_none(number=number).prefetch_related("project")
    if task is None:
        raise TaskNotFound(f"TASK-{number:03d}")
    task_id = f"TASK-{number:03d}"
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
        task_id=task_id,
        task_status=task.status,
        reason=task.reason,
        run_id=run.id if run else None,
        run_status=run.status if run else None,
        phase=run.phase if run else None,
        iteration=run.iteration if run else 0,
        total_tokens=total,
        cost_usd=spent,
        branch=branch_name(task_id) if task.base_commit else None,
        fetch_hint=fetch_hint(_workspace(task, home)) if home is not None else None,
        phases=await task_phases(number, prices) if prices is not None else (),
    )


async def task_diff(number: int, home: Path) -> BranchDiff:
    """The task's branch against the commit it started from, and where to fetch the branch."""
    task = await Task.get_or_none(number=number).prefetch_related("project")
    task_id = f"TASK-{number:03d}"
    if task is None:
        raise TaskNotFound(task_id)
    workspace = _workspace(task, home)
    if workspace is None:
        raise NoBranch(f"{task_id} has no branch yet; it gets one when it first runs")
    return await branch_diff(workspace)
