"""What finished tasks leave on the worker's disk goes, with real git, on SQLite and PostgreSQL:
a completed or deleted task's worktree and agent home are removed (the branch stays), a task
that may still resume keeps them, and a worktree with work that exists nowhere else is kept."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import traceback
from pathlib import Path

import pytest

from orc.db.models import Project, Task
from orc.runs.agent import AgentConfig
from orc.runs.agent_env import agent_home
from orc.runs.dispatcher import Dispatcher
from orc.runs.engine import RunPolicy
from orc.runs.workspace import commit_changes, prepare_workspace
from orc.runs.workspace_cleanup import _remove_tree, sweep_workspaces
from orc.usage.pricing import load_prices


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


async def task_with_workspace(repo: Path, home: Path, status: str, title: str) -> tuple[Task, Path]:
    project = await Project.get_or_create(name=repo.name, defaults={"path": str(repo)})
    task = await Task.create(title=title, weight="trivial", status=status, project=project[0])
    task_id = f"TASK-{task.number:03d}"
    workspace = await prepare_workspace(repo, repo.name, home, task_id)
    (workspace.path / f"{title}.txt").write_text(title + "\n")
    assert await commit_changes(workspace, f"{task_id} implement: {title}", "orc", "orc@x")
    agent_home(home, task_id).mkdir(parents=True)
    (agent_home(home, task_id) / ".claude.json").write_text("{}")
    return task, workspace.path


async def test_completed_and_deleted_tasks_lose_their_worktrees_not_their_branches(
    store, repo, tmp_path
):
    home = tmp_path / "home"
    completed, completed_path = await task_with_workspace(repo, home, "completed", "done")
    failed, failed_path = await task_with_workspace(repo, home, "failed", "retry")
    blocked, blocked_path = await task_with_workspace(repo, home, "blocked", "asks")
    deleted, deleted_path = await task_with_workspace(repo, home, "completed", "gone")
    await deleted.delete()

    assert await sweep_workspaces(home) == 2

    for task, path in ((completed, completed_path), (deleted, deleted_path)):
        task_id = f"TASK-{task.number:03d}"
        assert not path.exists()
        assert not agent_home(home, task_id).exists()
        assert str(path) not in git(repo, "worktree", "list")
        # The work itself is on the branch, where the user fetches it from.
        title = "done" if task is completed else "gone"
        assert git(repo, "show", f"orc/{task_id}:{title}.txt") == f"{title}\n"
    for task, path in ((failed, failed_path), (blocked, blocked_path)):
        assert (path / ".git").exists()
        assert agent_home(home, f"TASK-{task.number:03d}").exists()
        assert str(path) in git(repo, "worktree", "list")
    assert git(repo, "status", "--porcelain") == ""  # the user's checkout: untouched

    # Nothing left to do: a second sweep removes nothing and fails on nothing.
    assert await sweep_workspaces(home) == 0


async def test_a_new_run_of_a_completed_task_gets_its_worktree_back(store, repo, tmp_path):
    home = tmp_path / "home"
    task, path = await task_with_workspace(repo, home, "completed", "again")
    await sweep_workspaces(home)
    assert not path.exists()

    task_id = f"TASK-{task.number:03d}"
    workspace = await prepare_workspace(repo, repo.name, home, task_id)
    assert workspace.path == path
    assert (path / "again.txt").read_text() == "again\n"  # the branch's earlier commits
    assert git(path, "rev-parse", "--abbrev-ref", "HEAD").strip() == f"orc/{task_id}"


async def test_uncommitted_work_of_a_task_completed_by_hand_is_kept(store, repo, tmp_path):
    """An admin marked a blocked task complete: the agent's uncommitted changes exist only in
    its worktree, so it stays until the task is run again or deleted."""
    home = tmp_path / "home"
    task, path = await task_with_workspace(repo, home, "completed", "by-hand")
    (path / "draft.py").write_text("half done\n")

    assert await sweep_workspaces(home) == 0
    assert (path / "draft.py").read_text() == "half done\n"

    await task.delete()
    assert await sweep_workspaces(home) == 1
    assert not path.exists()


async def test_the_tasks_a_worker_is_running_are_never_swept(store, repo, tmp_path):
    home = tmp_path / "home"
    task, path = await task_with_workspace(repo, home, "completed", "busy")

    assert await sweep_workspaces(home, busy={task.number}) == 0
    assert (path / "busy.txt").exists()


def test_read_only_directories_an_agent_left_are_removed_too():
    """A tool the agent ran may leave read-only directories (Go's module cache does); orc runs
    as an ordinary user (uid 1000 in the container), for whom they block a plain removal."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")  # CI runs as root
    nobody = 65534
    scratch = Path(tempfile.mkdtemp(prefix="orc-readonly-"))
    try:
        cache = scratch / "worktree" / "pkg" / "mod"
        cache.mkdir(parents=True)
        (cache / "module.go").write_text("package m\n")
        for path in (scratch, *scratch.rglob("*")):
            os.chown(path, nobody, nobody)
        os.chmod(cache, 0o555)
        os.chmod(cache.parent, 0o555)
        # As that user (this test process runs as root, whom permissions do not stop), in a
        # child: seteuid here would change every thread of the test process, and a thread of
        # another test (a database drop) then failed with EACCES reading root's files.
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setgid(nobody)
                os.setuid(nobody)
                _remove_tree(scratch / "worktree")
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert not (scratch / "worktree").exists()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def test_a_starting_worker_removes_what_finished_tasks_left(store, repo, tmp_path):
    """Worktrees an older orc kept (or a worker that died before removing them) go when the
    job worker's run loop starts, without waiting for a run."""
    home = tmp_path / "home"
    done, done_path = await task_with_workspace(repo, home, "completed", "left-over")
    _, failed_path = await task_with_workspace(repo, home, "failed", "to-resume")
    agent = AgentConfig("/bin/false", "/bin/false", None, "acceptEdits", ())
    policy = RunPolicy(home, agent, {}, {}, load_prices(tmp_path))
    dispatcher = Dispatcher(policy, "test-host:1:1", max_running=1)
    loop = asyncio.create_task(dispatcher.run_forever())
    try:
        deadline = time.monotonic() + 30
        while done_path.exists():
            assert time.monotonic() < deadline, "the worker never removed it"
            await asyncio.sleep(0.05)
    finally:
        dispatcher.stop()
        await asyncio.wait_for(loop, 15)
    assert not agent_home(home, f"TASK-{done.number:03d}").exists()
    assert (failed_path / "to-resume.txt").exists()
