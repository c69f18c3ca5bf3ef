"""CLI commands on the local store: orc new, list, show, cost, and fold-usage."""

from __future__ import annotations

import getpass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from orc.cli.console import pass_database_settings, run_on_database
from orc.config import Settings
from orc.tasks.vocabulary import DEFAULT_WEIGHT, STATUSES, WEIGHTS

if TYPE_CHECKING:  # the commands import the domain when they run, to start fast
    from orc.runs.views import RunStatus
    from orc.tasks.lifecycle import TaskDetail
    from orc.usage.recording import TaskUsage


def _task_number(task_id: str) -> int:
    from orc.tasks.lifecycle import parse_task_id

    number = parse_task_id(task_id.upper())
    if number is None:
        raise click.UsageError(f"{task_id!r} is not a task id; ids look like TASK-001")
    return number


def _money(value: float) -> str:
    return f"${value:,.4f}"


def _moment(value: datetime | None) -> str:
    return value.isoformat()[:19] if value else "-"


@click.command("new")
@click.argument("title")
@click.option("--weight", type=click.Choice(WEIGHTS), default=DEFAULT_WEIGHT, show_default=True)
@click.option("--description", default="", help="Longer description.")
@click.option(
    "--project",
    help="Project name or path (default: the repository you are in, or the only project).",
)
@click.option("--base", help="Branch or commit the task starts from (default: HEAD).")
@click.option(
    "--budget",
    type=click.FloatRange(min=0, min_open=True),
    help="Spend limit in USD (default: ORC_TASK_BUDGET_USD).",
)
@pass_database_settings
def new_task(
    settings: Settings,
    title: str,
    weight: str,
    description: str,
    project: str | None,
    base: str | None,
    budget: float | None,
) -> None:
    """Create a task in a project."""
    from pathlib import Path

    from orc.projects.registry import project_for_task
    from orc.tasks.lifecycle import create_task

    title = title.strip()
    if not title or len(title) > 200:
        raise click.UsageError("the title must have 1 to 200 characters")

    async def make() -> Any:
        target = await project_for_task(project, Path.cwd())
        return await create_task(
            title, description, weight, getpass.getuser(), target, base, budget
        )

    task = run_on_database(settings, make)
    if task.project:
        click.echo(f"{task.id} created in {task.project}: {task.title} ({task.weight})")
        click.echo(f"next: orc run {task.id} --follow")
    else:
        click.echo(f"{task.id} created: {task.title} ({task.weight})")


@click.command("list")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--limit", type=click.IntRange(1, 100), default=50, show_default=True)
@pass_database_settings
def list_tasks_command(settings: Settings, status: str | None, limit: int) -> None:
    """List tasks, newest first."""
    from rich.console import Console
    from rich.table import Table

    from orc.tasks.lifecycle import list_tasks

    page = run_on_database(settings, lambda: list_tasks(limit, status))
    items, total = page.items, page.total
    table = Table("id", "title", "weight", "status", "phase", "updated", box=None)
    for task in items:
        table.add_row(
            task.id,
            task.title,
            task.weight,
            task.status,
            task.current_phase or "-",
            task.updated_at.isoformat()[:19],
        )
    Console(width=160).print(table)
    click.echo(f"{len(items)} of {total} task(s)")


@click.command("show")
@click.argument("task_id")
@pass_database_settings
def show_task(settings: Settings, task_id: str) -> None:
    """A task with its phases, tokens and cost."""
    from rich.console import Console
    from rich.table import Table

    from orc.runs.views import run_status
    from orc.tasks.lifecycle import get_task
    from orc.usage.pricing import load_prices
    from orc.usage.recording import task_usage

    number = _task_number(task_id)
    prices = load_prices(settings.home)

    async def gather() -> tuple[TaskDetail, TaskUsage, RunStatus]:
        return (
            await get_task(number),
            await task_usage(number, prices),
            await run_status(number, prices, settings.home),
        )

    task, usage, status = run_on_database(settings, gather)
    console = Console(width=160, highlight=False)
    console.print(f"[bold]{task.id}[/bold] {task.title}  ({task.weight}, {task.status})")
    if task.description:
        console.print(task.description, markup=False)
    if task.reason:
        console.print(f"reason: {task.reason}", markup=False)
    if status.branch:
        console.print(f"branch: {status.branch}", markup=False)
    if status.fetch_hint:
        console.print(f"fetch it: {status.fetch_hint}", markup=False)
    phases = Table(
        "phase", "status", "iterations", "duration", "tokens", "cost", "started", box=None
    )
    for phase in status.phases:
        phases.add_row(
            phase.name,
            phase.status,
            str(phase.iterations),
            "-" if phase.duration_seconds is None else f"{phase.duration_seconds:.1f} s",
            f"{phase.total_tokens:,}",
            _money(phase.cost_usd),
            _moment(phase.started_at),
        )
    console.print(phases)
    tokens = Table(
        "phase", "model", "input", "output", "cache read", "cache write", "cost", box=None
    )
    for row in usage.by_phase_and_model:
        t = row.tokens
        tokens.add_row(
            row.phase or "-",
            row.model,
            f"{t['input']:,}",
            f"{t['output']:,}",
            f"{t['cache_read']:,}",
            f"{t['cache_write']:,}",
            _money(row.cost_usd),
        )
    console.print(tokens)
    unpriced = usage.unpriced_models
    console.print(
        f"total cost {_money(usage.cost_usd)}"
        + (f" (unpriced: {', '.join(unpriced)})" if unpriced else "")
    )


@click.command("cost")
@pass_database_settings
def cost_command(settings: Settings) -> None:
    """Tokens and cost today, this week, this month; by model; top tasks."""
    from rich.console import Console
    from rich.table import Table

    from orc.usage.cost import cost_summary
    from orc.usage.pricing import load_prices

    prices = load_prices(settings.home)
    summary = run_on_database(settings, lambda: cost_summary(prices))
    console = Console(width=160)
    periods = Table("period", "tokens", "cost", box=None)
    for name, block in (("today", summary.today), ("week", summary.week), ("month", summary.month)):
        periods.add_row(name, f"{block.total_tokens:,}", _money(block.cost_usd))
    console.print(periods)
    models = Table("model (this month)", "tokens", "cost", box=None)
    for row in summary.by_model:
        models.add_row(
            row.model + ("" if row.priced else " (unpriced)"),
            f"{row.cost.total_tokens:,}",
            _money(row.cost.cost_usd),
        )
    console.print(models)
    top = Table("top task", "title", "tokens", "cost", box=None)
    for task in summary.top_tasks:
        top.add_row(
            task.task_id,
            task.title or "(deleted)",
            f"{task.total_tokens:,}",
            _money(task.cost_usd),
        )
    console.print(top)


@click.command("fold-usage")
@pass_database_settings
def fold_usage_command(settings: Settings) -> None:
    """Fold new usage events into rollups now (the worker also does it every 5 s)."""
    from orc.usage.pricing import load_prices
    from orc.usage.rollups import fold_usage

    prices = load_prices(settings.home)
    result = run_on_database(settings, lambda: fold_usage(prices))
    click.echo(f"folded {result.events} event(s); watermark {result.watermark}")


COMMANDS = (new_task, list_tasks_command, show_task, cost_command, fold_usage_command)
