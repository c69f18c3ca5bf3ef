"""Running tasks: orc run|pause|resume|cancel TASK, orc log TASK, orc diff TASK.

``orc run --follow`` and ``orc log --follow`` read the transcript from the database as the
worker writes it, so they work beside ``orc serve`` on the same machine or database.
"""

from __future__ import annotations

import getpass
import sys
from typing import Any

import click

from orc.cli.console import pass_database_settings, run_on_database
from orc.config import Settings
from orc.errors import EXIT_FAILED

FOLLOW_POLL_SECONDS = 0.5
SUCCESS = "completed"


def _number(task_id: str) -> int:
    from orc.tasks.lifecycle import parse_task_id

    number = parse_task_id(task_id.strip().upper())
    if number is None:
        raise click.UsageError(f"{task_id!r} is not a task id; ids look like TASK-001")
    return number


def _line(entry: dict[str, Any]) -> str:
    """One transcript entry as a terminal shows it."""
    content, kind = entry["content"], entry["kind"]
    if kind == "prompt":
        first = (content.get("text") or "").strip().splitlines()[:1]
        return f"» {entry['phase']} #{entry['iteration']}: {first[0] if first else ''}"
    if kind in ("text", "thinking"):
        return content.get("text", "")
    if kind == "tool_use":
        arguments = content.get("input") or {}
        detail = arguments.get("command") or arguments.get("file_path") or ""
        return f"  ⚙ {content.get('name')} {detail}".rstrip()
    if kind == "tool_result":
        lines = (content.get("content") or "").splitlines()
        mark = "✗" if content.get("is_error") else "↳"
        more = f" (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
        return f"    {mark} {lines[0] if lines else ''}{more}"
    if kind == "result":
        cost = content.get("cost_usd")
        return f"  ✓ turn ended{f' (${cost:.4f})' if cost is not None else ''}"
    return f"  ! {content.get('text', '')}"


def _status_line(status: Any) -> str:
    where = f"{status.phase} #{status.iteration}" if status.phase else status.task_status
    return f"[{status.task_id} {where} · {status.total_tokens:,} tokens · ${status.cost_usd:.4f}]"


def _follow(settings: Settings, number: int, after: int = 0) -> int:
    """Print the transcript as it grows until the run stops; the exit code for its outcome."""
    import asyncio

    from orc.runs.transcript import transcript_page
    from orc.runs.views import run_status

    async def follow() -> Any:
        nonlocal after
        shown = ""
        while True:
            status = await run_status(number)
            for entry in await transcript_page(number, after, limit=200):
                click.echo(_line(entry))
                after = entry["id"]
            line = _status_line(status)
            if line != shown:
                click.echo(line, err=True)
                shown = line
            if status.ended and status.task_status not in ("queued", "running"):
                return status
            await asyncio.sleep(FOLLOW_POLL_SECONDS)

    final = run_on_database(settings, follow)
    message = f"{final.task_id} {final.task_status}"
    if final.reason:
        message += f": {final.reason}"
    click.echo(message, err=True)
    return 0 if final.task_status == SUCCESS else EXIT_FAILED


@click.command("run")
@click.argument("task_id")
@click.option("--follow", "-f", is_flag=True, help="Stream the transcript until the run ends.")
@pass_database_settings
def run_command(settings: Settings, task_id: str, follow: bool) -> None:
    """Queue a run of TASK_ID; the job worker starts it (exit 1 if it fails, with --follow)."""
    from orc.runs.control import queue_run
    from orc.runs.transcript import transcript_page

    number = _number(task_id)

    async def queue() -> tuple[Any, int]:
        existing = await transcript_page(number, 0, limit=500)
        last = existing[-1]["id"] if existing else 0
        return await queue_run(number, getpass.getuser()), last

    request, last = run_on_database(settings, queue)
    click.echo(f"{request.task_id} {request.message}")
    if follow:
        sys.exit(_follow(settings, number, after=last))


@click.command("pause")
@click.argument("task_id")
@pass_database_settings
def pause_command(settings: Settings, task_id: str) -> None:
    """Pause TASK_ID after the agent's current turn (its session is kept)."""
    from orc.runs.control import pause_run

    number = _number(task_id)
    click.echo(run_on_database(settings, lambda: pause_run(number)).message)


@click.command("resume")
@click.argument("task_id")
@click.option("--note", help="An answer for the agent (when the task is blocked on a question).")
@pass_database_settings
def resume_command(settings: Settings, task_id: str, note: str | None) -> None:
    """Continue a paused or blocked TASK_ID, optionally with a note for the agent."""
    from orc.runs.control import resume_run

    number = _number(task_id)
    click.echo(run_on_database(settings, lambda: resume_run(number, note)).message)


@click.command("cancel")
@click.argument("task_id")
@pass_database_settings
def cancel_command(settings: Settings, task_id: str) -> None:
    """Stop TASK_ID's run now; the agent and its tools are ended (the task fails: cancelled)."""
    from orc.runs.control import cancel_run

    number = _number(task_id)
    click.echo(run_on_database(settings, lambda: cancel_run(number)).message)


@click.command("log")
@click.argument("task_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the run stops.")
@pass_database_settings
def log_command(settings: Settings, task_id: str, follow: bool) -> None:
    """Print TASK_ID's transcript (every run)."""
    from orc.runs.transcript import transcript_page
    from orc.tasks.lifecycle import get_task

    number = _number(task_id)
    if follow:
        sys.exit(_follow(settings, number))

    async def everything() -> list[dict[str, Any]]:
        await get_task(number)  # an unknown task is an error, not an empty log
        entries: list[dict[str, Any]] = []
        while True:
            page = await transcript_page(number, entries[-1]["id"] if entries else 0, 500)
            entries.extend(page)
            if len(page) < 500:
                return entries

    for entry in run_on_database(settings, everything):
        click.echo(_line(entry))


@click.command("diff")
@click.argument("task_id")
@click.option("--stat", is_flag=True, help="Only the summary of changed files.")
@pass_database_settings
def diff_command(settings: Settings, task_id: str, stat: bool) -> None:
    """Show TASK_ID's branch against the commit it started from."""
    from orc.runs.views import task_diff

    number = _number(task_id)
    diff = run_on_database(settings, lambda: task_diff(number, settings.home))
    click.echo(diff.stat if stat else diff.patch, nl=False)
    if diff.truncated:
        click.echo("\n[diff truncated; fetch the branch to see all of it]", err=True)
    if diff.fetch_hint:
        click.echo(f"{diff.branch} is in orc's clone; fetch it: {diff.fetch_hint}", err=True)


COMMANDS = (run_command, pause_command, resume_command, cancel_command, log_command, diff_command)
