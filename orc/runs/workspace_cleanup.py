"""Removing the worktrees and agent homes that finished tasks no longer need.

A completed task's work is on its branch (orc commits every phase), so its worktree (a whole
checkout of the project) and the agent's HOME (Claude Code's session files) only take disk,
and every git command in the project, the agent's own at each start included, reads every
worktree the repository lists. Both go when a run completes; the job worker's sweep removes
what is left (a worker that died between the two, a deleted task, an older orc that kept
them). A failed, blocked, paused or queued task keeps both: resuming needs them. A new run of
a completed task makes its worktree again from the branch. The branch always stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import stat
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

from orc.db.models import Task
from orc.projects.git import run_git
from orc.runs.agent_env import AGENT_HOMES_DIR
from orc.runs.claims import COMPLETED
from orc.runs.workspace import WORKTREES_DIR

log = logging.getLogger("orc.runs")
TASK_DIR = re.compile(r"TASK-(\d+)")


def _common_git_dir(worktree: Path) -> Path | None:
    """The repository's git directory that lists ``worktree`` (from its ``.git`` file), or
    None when it is not a linked worktree any more (half made, or its repository is gone)."""
    try:
        pointer = (worktree / ".git").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not pointer.startswith("gitdir:"):
        return None
    admin = Path(pointer.removeprefix("gitdir:").strip())
    try:
        common = (admin / (admin / "commondir").read_text(encoding="utf-8").strip()).resolve()
    except OSError:
        return None
    return common if common.is_dir() else None


def _make_writable_and_retry(function: Callable[..., object], path: str, _: object) -> None:
    """rmtree's error hook: a tool the agent ran may leave read-only directories."""
    with contextlib.suppress(OSError):
        parent = os.path.dirname(path)
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
        function(path)


def _remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path, onerror=_make_writable_and_retry)


async def remove_worktree_dir(worktree: Path) -> None:
    """Remove a worktree and its record in the repository, whatever state it is in."""
    common = _common_git_dir(worktree)
    trust = (common, common.parent) if common is not None else ()
    if common is not None:
        await run_git(
            common, "worktree", "remove", "--force", str(worktree), check=False, trust=trust
        )
    if not worktree.exists():  # git removed it and its record
        return
    await asyncio.to_thread(_remove_tree, worktree)
    if common is not None:
        await run_git(common, "worktree", "prune", check=False, trust=trust)


async def remove_task_workspace(worktree: Path, agent_home: Path) -> None:
    """Remove a task's worktree and its agent's HOME (the branch stays)."""
    await remove_worktree_dir(worktree)
    await asyncio.to_thread(_remove_tree, agent_home)


def _by_task(paths: Iterable[Path]) -> dict[int, list[Path]]:
    found: dict[int, list[Path]] = {}
    for path in paths:
        match = TASK_DIR.fullmatch(path.name)
        if match and path.is_dir():
            found.setdefault(int(match[1]), []).append(path)
    return found


async def sweep_workspaces(home: Path, busy: Collection[int] = ()) -> int:
    """Remove the worktrees and agent homes of completed and deleted tasks under ``home``
    (never those of the task numbers in ``busy``, runs this worker is executing, nor a
    completed task's worktree with uncommitted changes). Returns how many tasks' went."""
    worktrees = await asyncio.to_thread(lambda: _by_task((home / WORKTREES_DIR).glob("*/TASK-*")))
    homes = await asyncio.to_thread(lambda: _by_task((home / AGENT_HOMES_DIR).glob("TASK-*")))
    numbers = (set(worktrees) | set(homes)) - set(busy)
    if not numbers:
        return 0
    statuses = dict(await Task.filter(number__in=sorted(numbers)).values_list("number", "status"))
    finished = [n for n in sorted(numbers) if statuses.get(n, COMPLETED) == COMPLETED]
    removed = 0
    for number in finished:
        deleted = number not in statuses
        kept = [w for w in worktrees.get(number, []) if not deleted and await _has_changes(w)]
        if kept:
            # Completed by hand (an admin override) with the agent's work not committed: that
            # work exists only there, so it stays until the task is run again or deleted.
            log.debug("kept the worktree of TASK-%03d: it has uncommitted changes", number)
            continue
        for worktree in worktrees.get(number, []):
            await remove_worktree_dir(worktree)
        for agent_home in homes.get(number, []):
            await asyncio.to_thread(_remove_tree, agent_home)
        log.info(
            "removed the worktree and agent home of TASK-%03d (%s)",
            number,
            "deleted" if deleted else "completed",
        )
        removed += 1
    return removed


async def _has_changes(worktree: Path) -> bool:
    """Does the worktree hold changes its branch does not (ignored files aside)?"""
    common = _common_git_dir(worktree)
    if common is None:  # not a worktree any more: nothing of git's to lose
        return False
    status = await run_git(
        worktree, "status", "--porcelain", check=False, trust=(common, common.parent)
    )
    return bool(status.strip())
