"""A task's own git worktree and branch, a commit per phase, and the diff against the base.

The worktree lives under ``ORC_HOME/worktrees/<project>/<TASK-ID>`` on the branch
``orc/<TASK-ID>``, started from the project's HEAD (or a named base). ``git worktree add`` writes
only into the repository's ``.git`` (a ref and a worktree record): the user's checkout, index and
uncommitted changes are never touched. A repository orc cannot write to (the container mounts
``/projects`` read-only) is cloned into ``ORC_HOME/clones/<project>`` once and refreshed before
each new task; the branch then lives in that clone, and ``fetch_hint`` says how to get it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orc.errors import EXIT_USAGE, OrcError
from orc.projects.git import GitError, run_git

WORKTREES_DIR = "worktrees"
CLONES_DIR = "clones"
DIFF_LIMIT_BYTES = 1024 * 1024


class BaseNotFound(OrcError):
    """The base branch (or commit) to start a task from does not exist."""

    status = 400
    code = "base_not_found"
    exit_code = EXIT_USAGE

    def __init__(self, base: str, project: Path) -> None:
        super().__init__(f"{base!r} is not a branch or commit of {project}")


@dataclass(frozen=True)
class Workspace:
    """Where a task's agent works and where its branch can be fetched from."""

    path: Path
    branch: str
    base_commit: str
    repository: Path  # holds the branch: the project itself, or orc's clone of it
    cloned: bool

    def fetch_hint(self) -> str:
        """The command that brings the task's branch into the user's checkout (as a branch of
        the same name)."""
        return f"git fetch {self.repository} {self.branch}:{self.branch}"


@dataclass(frozen=True)
class BranchDiff:
    """The task branch against the commit it started from."""

    base_commit: str
    head_commit: str
    stat: str
    patch: str
    truncated: bool
    branch: str | None = None
    fetch_hint: str | None = None  # set when the branch lives in orc's clone of the project

    def to_json(self) -> dict[str, object]:
        return {
            "branch": self.branch,
            "fetch_hint": self.fetch_hint,
            "base_commit": self.base_commit,
            "head_commit": self.head_commit,
            "stat": self.stat,
            "patch": self.patch,
            "truncated": self.truncated,
        }


def branch_name(task_id: str) -> str:
    return f"orc/{task_id}"


def worktree_path(home: Path, project_name: str, task_id: str) -> Path:
    return home / WORKTREES_DIR / project_name / task_id


def is_writable(repository: Path) -> bool:
    """Can orc add a worktree and a branch to ``repository`` (false on a read-only mount)?"""
    git_dir = repository / ".git"
    return os.access(git_dir if git_dir.exists() else repository, os.W_OK)


async def resolve_commit(repository: Path, ref: str) -> str:
    out = await run_git(
        repository, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False
    )
    if not out.strip():
        raise BaseNotFound(ref, repository)
    return out.strip()


async def _refreshed_clone(project: Path, clone: Path) -> Path:
    """A bare clone of a read-only ``project`` with its branches fetched now."""
    if not (clone / "HEAD").exists():
        clone.parent.mkdir(parents=True, exist_ok=True)
        await run_git(
            clone.parent, "clone", "--bare", "--quiet", str(project), str(clone), trust=(project,)
        )
        await run_git(clone, "config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*")
    await run_git(clone, "fetch", "--quiet", "--prune", "origin", trust=(project,))
    return clone


async def prepare_workspace(
    project: Path,
    project_name: str,
    home: Path,
    task_id: str,
    base: str | None = None,
    base_commit: str | None = None,
) -> Workspace:
    """Make the task's worktree, or find the one an earlier (perhaps crashed) run made.

    ``base_commit`` is what the task recorded when its branch was made (orc keeps it in its
    database, never in the user's repository); a new branch starts at ``base`` (default HEAD).
    """
    path = worktree_path(home, project_name, task_id)
    branch = branch_name(task_id)
    cloned = not is_writable(project)
    repository = (
        await _refreshed_clone(project, home / CLONES_DIR / project_name) if cloned else project
    )
    trust = (repository, project)
    has_branch = (
        await run_git(
            repository,
            "rev-parse",
            "--verify",
            "--quiet",
            f"refs/heads/{branch}",
            check=False,
            trust=trust,
        )
    ).strip()
    if has_branch and base_commit is None:
        start = await resolve_commit(project, base or "HEAD")
        base_commit = (await run_git(repository, "merge-base", start, branch, trust=trust)).strip()
    if (path / ".git").exists():
        head = await run_git(path, "rev-parse", "--abbrev-ref", "HEAD", check=False, trust=trust)
        if has_branch and head.strip() == branch and base_commit:
            return Workspace(path, branch, base_commit, repository, cloned)
        # Half made or not ours: make it again (the branch and its commits stay).
        await run_git(
            repository, "worktree", "remove", "--force", str(path), check=False, trust=trust
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if has_branch and base_commit:
        await _add_worktree(repository, trust, str(path), branch)
        return Workspace(path, branch, base_commit, repository, cloned)
    base_commit = await resolve_commit(project, base or "HEAD")
    await _add_worktree(repository, trust, "-b", branch, str(path), base_commit)
    return Workspace(path, branch, base_commit, repository, cloned)


async def _add_worktree(repository: Path, trust: tuple[Path, ...], *args: str) -> None:
    """``git worktree add``; once more after a prune when git still lists a worktree that is
    gone (its directory deleted by hand, or the branch "checked out" there)."""
    try:
        await run_git(repository, "worktree", "add", "--quiet", *args, trust=trust)
    except GitError:
        await run_git(repository, "worktree", "prune", trust=trust)
        await run_git(repository, "worktree", "add", "--quiet", *args, trust=trust)


def _author_env(author_name: str, author_email: str) -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": author_name,
        "GIT_AUTHOR_EMAIL": author_email,
        "GIT_COMMITTER_NAME": author_name,
        "GIT_COMMITTER_EMAIL": author_email,
    }


async def commit_changes(
    workspace: Workspace, message: str, author_name: str, author_email: str
) -> str | None:
    """Commit everything the agent changed; the new commit's id, or None when nothing changed.

    The project's hooks and signing settings are not used: orc's commits must not depend on
    tools that may not exist on the server.
    """
    trust = (workspace.repository,)
    await run_git(workspace.path, "add", "--all", trust=trust)
    if not (await run_git(workspace.path, "status", "--porcelain", trust=trust)).strip():
        return None
    await run_git(
        workspace.path,
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "commit.gpgsign=false",
        "commit",
        "--quiet",
        "--no-verify",
        "-m",
        message,
        env=_author_env(author_name, author_email),
        trust=trust,
    )
    return (await run_git(workspace.path, "rev-parse", "HEAD", trust=trust)).strip()


async def branch_diff(workspace: Workspace, limit: int = DIFF_LIMIT_BYTES) -> BranchDiff:
    """What the task's branch changed since it started (committed work only)."""
    trust = (workspace.repository,)
    repo = workspace.repository
    head = (await run_git(repo, "rev-parse", workspace.branch, trust=trust)).strip()
    stat = await run_git(repo, "diff", "--stat", workspace.base_commit, head, trust=trust)
    patch = await run_git(repo, "diff", workspace.base_commit, head, trust=trust)
    data = patch.encode()
    truncated = len(data) > limit
    if truncated:
        patch = data[:limit].decode(errors="ignore")
    hint = workspace.fetch_hint() if workspace.cloned else None
    return BranchDiff(workspace.base_commit, head, stat, patch, truncated, workspace.branch, hint)


def branch_repository(project: Path, project_name: str, home: Path) -> tuple[Path, bool]:
    """Where a task branch of ``project`` lives: the project, or orc's clone of it."""
    if is_writable(project):
        return project, False
    return home / CLONES_DIR / project_name, True
