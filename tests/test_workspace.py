"""A task's worktree and branch, with real git: the user's checkout is never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orc.projects.registry import NotAGitRepository, repository_root
from orc.runs.workspace import (
    BaseNotFound,
    branch_diff,
    commit_changes,
    prepare_workspace,
)

AUTHOR = ("orc", "orc@example.com")


def git(repo: Path, *args: str) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(repo.parent),
        "GIT_AUTHOR_NAME": "Dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "Dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    return subprocess.run(
        ["git", "-c", f"safe.directory={repo}", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A repository with two commits on main, a feature branch, and uncommitted work."""
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text("print('hello')\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "first")
    git(repo, "branch", "feature")
    (repo / "app.py").write_text("print('hello, world')\n")
    git(repo, "commit", "-qam", "second")
    # The user's own work in progress, which orc must never touch.
    (repo / "app.py").write_text("print('editing')\n")
    (repo / "notes.txt").write_text("untracked\n")
    return repo


def checkout_state(repo: Path) -> tuple[str, str, str, str]:
    return (
        git(repo, "status", "--porcelain"),
        git(repo, "rev-parse", "--abbrev-ref", "HEAD"),
        (repo / "app.py").read_text(),
        (repo / "notes.txt").read_text(),
    )


async def test_a_task_gets_its_own_branch_and_worktree_and_the_checkout_is_untouched(
    project: Path, tmp_path: Path
):
    before = checkout_state(project)
    home = tmp_path / "home"
    ws = await prepare_workspace(project, "project", home, "TASK-001")

    assert ws.path == home / "worktrees" / "project" / "TASK-001"
    assert ws.branch == "orc/TASK-001" and not ws.cloned
    assert ws.base_commit == git(project, "rev-parse", "main").strip()
    assert (ws.path / "app.py").read_text() == "print('hello, world')\n"  # HEAD, not the edit
    assert not (ws.path / "notes.txt").exists()

    (ws.path / "app.py").write_text("print('done')\n")
    (ws.path / "new.py").write_text("x = 1\n")
    commit = await commit_changes(ws, "TASK-001 implement: say done", *AUTHOR)
    assert commit is not None
    log = git(project, "log", "-1", "--format=%an <%ae>|%s", "orc/TASK-001").strip()
    assert log == "orc <orc@example.com>|TASK-001 implement: say done"
    assert await commit_changes(ws, "nothing", *AUTHOR) is None

    assert checkout_state(project) == before

    diff = await branch_diff(ws)
    assert diff.base_commit == ws.base_commit and diff.head_commit == commit
    assert "new.py" in diff.stat and "app.py" in diff.stat
    assert "+print('done')" in diff.patch and not diff.truncated


async def test_a_rerun_finds_the_worktree_and_a_lost_worktree_is_remade_from_the_branch(
    project: Path, tmp_path: Path
):
    home = tmp_path / "home"
    ws = await prepare_workspace(project, "project", home, "TASK-002")
    (ws.path / "a.txt").write_text("phase one\n")
    first = await commit_changes(ws, "TASK-002 spec", *AUTHOR)
    (ws.path / "b.txt").write_text("uncommitted work of an interrupted phase\n")

    again = await prepare_workspace(
        project, "project", home, "TASK-002", base_commit=ws.base_commit
    )
    assert again == ws
    assert (again.path / "b.txt").exists()  # the interrupted phase's files are still there

    shutil.rmtree(ws.path)  # e.g. a volume restored without its worktrees
    remade = await prepare_workspace(project, "project", home, "TASK-002")
    assert remade.base_commit == ws.base_commit  # found again from the branch
    assert git(remade.path, "rev-parse", "HEAD").strip() == first
    assert (remade.path / "a.txt").read_text() == "phase one\n"


async def test_a_base_branch_and_the_errors_for_bad_input(project: Path, tmp_path: Path):
    home = tmp_path / "home"
    ws = await prepare_workspace(project, "project", home, "TASK-003", base="feature")
    assert ws.base_commit == git(project, "rev-parse", "feature").strip()
    assert (ws.path / "app.py").read_text() == "print('hello')\n"

    with pytest.raises(BaseNotFound) as missing:
        await prepare_workspace(project, "project", home, "TASK-004", base="no-such-branch")
    assert missing.value.status == 400 and "no-such-branch" in missing.value.message

    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(NotAGitRepository) as not_git:
        await repository_root(plain)
    assert not_git.value.code == "not_a_git_repository" and str(plain) in not_git.value.message
    with pytest.raises(NotAGitRepository):
        await repository_root(tmp_path / "missing")
    assert await repository_root(project / ".git" / "..") == project.resolve()


async def test_a_repository_owned_by_someone_else_is_used_without_changing_git_config(
    project: Path, tmp_path: Path
):
    if os.geteuid() != 0:
        pytest.skip("changing a repository's owner needs root")
    shutil.chown(project, "nobody")
    for path in project.rglob("*"):
        shutil.chown(path, "nobody")
    ws = await prepare_workspace(project, "project", tmp_path / "home", "TASK-005")
    (ws.path / "x.txt").write_text("x\n")
    assert await commit_changes(ws, "TASK-005 implement", *AUTHOR)
    assert not (tmp_path / ".gitconfig").exists()


@pytest.fixture
def read_only_project(project: Path, tmp_path: Path) -> Iterator[Path]:
    """The project mounted read-only, as the container mounts /projects."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root (CI runs as root)")
    mount = tmp_path / "ro-project"
    mount.mkdir()
    subprocess.run(["mount", "--bind", str(project), str(mount)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mount)], check=True)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


async def test_a_read_only_repository_is_cloned_and_the_branch_can_be_fetched(
    read_only_project: Path, project: Path, tmp_path: Path
):
    home = tmp_path / "home"
    ws = await prepare_workspace(read_only_project, "project", home, "TASK-006")
    assert ws.cloned and ws.repository == home / "clones" / "project"
    assert ws.base_commit == git(project, "rev-parse", "main").strip()
    (ws.path / "feature.py").write_text("y = 2\n")
    commit = await commit_changes(ws, "TASK-006 implement", *AUTHOR)

    # What the user does: fetch the branch from where orc says.
    hint = ws.fetch_hint()
    assert hint == f"git fetch {ws.repository} orc/TASK-006:orc/TASK-006"
    git(project, *hint.split()[1:])
    assert git(project, "rev-parse", "orc/TASK-006").strip() == commit

    # A new commit in the project reaches the next task's clone.
    git(project, "stash", "-q", "--include-untracked")
    (project / "later.py").write_text("z = 3\n")
    git(project, "add", "later.py")
    git(project, "commit", "-qm", "later")
    next_ws = await prepare_workspace(read_only_project, "project", home, "TASK-007")
    assert (next_ws.path / "later.py").exists()


async def test_a_worktree_deleted_by_hand_is_made_again_from_the_branch(
    project: Path, tmp_path: Path
):
    # git still lists the deleted directory as a worktree with the branch checked out there.
    home = tmp_path / "home"
    ws = await prepare_workspace(project, "project", home, "TASK-001")
    (ws.path / "work.py").write_text("done = True\n")
    await commit_changes(ws, "TASK-001 implement: work", *AUTHOR)
    shutil.rmtree(ws.path)
    again = await prepare_workspace(
        project, "project", home, "TASK-001", base_commit=ws.base_commit
    )
    assert (again.path / "work.py").read_text() == "done = True\n"
    listed = [line for line in git(project, "worktree", "list").splitlines() if "TASK-001" in line]
    assert len(listed) == 1, listed
