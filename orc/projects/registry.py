"""Registered projects: add (a git repository, by path), list, remove, and find one for a task.

A project is named after its repository's folder unless given a name. Registering the same
repository again is a no-op (``orc init`` may run twice); a name or path in use by another
project is a conflict. A task names its project by name or path; with one project registered
it may name none.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

from orc.db.models import Project, Task
from orc.errors import EXIT_USAGE, OrcError
from orc.projects.git import run_git

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Statuses of a task that still needs its project's repository.
BUSY_STATUSES = ("queued", "running")


class NotAGitRepository(OrcError):
    """A project path that git does not recognise."""

    status = 400
    code = "not_a_git_repository"
    exit_code = EXIT_USAGE

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"{path} is not a git repository; give the path of a repository "
            "(or run `git init` there and commit once)"
        )


class ProjectNotFound(OrcError):
    status = 404
    code = "project_not_found"
    exit_code = EXIT_USAGE

    def __init__(self, reference: str) -> None:
        super().__init__(f"no project {reference!r}; see `orc project list`")


class ProjectConflict(OrcError):
    """The name or the repository is registered already."""

    status = 409
    code = "project_exists"
    exit_code = EXIT_USAGE


class BadProjectName(OrcError):
    status = 400
    code = "bad_project_name"
    exit_code = EXIT_USAGE


class NoProject(OrcError):
    """A task names no project and there is not exactly one to default to."""

    status = 400
    code = "project_required"
    exit_code = EXIT_USAGE


class ProjectBusy(OrcError):
    status = 409
    code = "project_busy"
    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class ProjectInfo:
    """A project as the API and the CLI show it."""

    id: int
    name: str
    path: str

    @classmethod
    def of(cls, project: Project) -> ProjectInfo:
        return cls(project.id, project.name, project.path)

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "path": self.path}


def _absolute(path: Path) -> Path:
    """``path`` with ``~`` expanded, resolved; NotAGitRepository when no such path can exist
    (an unknown ``~user``, a name longer than the filesystem allows, a NUL)."""
    try:
        resolved = path.expanduser().resolve()
        resolved.is_dir()  # raises here, not later, for a name the filesystem refuses
    except (OSError, RuntimeError, ValueError):
        raise NotAGitRepository(path) from None
    return resolved


async def repository_root(path: Path) -> Path:
    """The top level of the git repository at ``path``; ``NotAGitRepository`` otherwise."""
    path = _absolute(path)
    if not path.is_dir():
        raise NotAGitRepository(path)
    try:
        top = await run_git(path, "rev-parse", "--show-toplevel")
    except OrcError:
        raise NotAGitRepository(path) from None
    return Path(top.strip())


def _default_name(root: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "-", root.name).lstrip(".-_") or "project"
    return name[:100]


async def add_project(path: Path, name: str | None = None) -> tuple[ProjectInfo, bool]:
    """Register the repository at ``path``; (the project, whether it is new)."""
    root = await repository_root(path)
    existing = await Project.get_or_none(path=str(root))
    if existing is not None:
        if name and name != existing.name:
            raise ProjectConflict(f"{root} is already registered as {existing.name!r}")
        return ProjectInfo.of(existing), False
    name = name or _default_name(root)
    if not NAME.match(name):
        raise BadProjectName(
            f"{name!r} is not a project name: use letters, digits, '.', '_' or '-' (≤ 100)"
        )
    if await Project.exists(name=name):
        raise ProjectConflict(f"a project named {name!r} exists already; choose another name")
    project = await Project.create(name=name, path=str(root))
    return ProjectInfo.of(project), True


async def list_projects() -> list[ProjectInfo]:
    return [ProjectInfo.of(p) for p in await Project.all().order_by("name")]


async def find_project(reference: str | None) -> Project:
    """The project a task names (by name or path), or the only one when it names none."""
    if reference is None or not reference.strip():
        projects = await Project.all().order_by("name").limit(2)
        if len(projects) == 1:
            return projects[0]
        if not projects:
            raise NoProject(
                "no project is registered: run `orc init` in a git repository, or "
                "`orc project add PATH`"
            )
        raise NoProject('several projects are registered: name one (`--project NAME` or "project")')
    reference = reference.strip()
    project = await Project.get_or_none(name=reference)
    if project is None and ("/" in reference or reference.startswith(".")):
        try:
            resolved: Path | None = _absolute(Path(reference))
        except NotAGitRepository:
            resolved = None
        project = await Project.get_or_none(path=str(resolved)) if resolved else None
        root = None
        if project is None and resolved is not None:
            with contextlib.suppress(NotAGitRepository):
                root = await repository_root(resolved)
            if root is not None:
                project = await Project.get_or_none(path=str(root))
    if project is None:
        raise ProjectNotFound(reference)
    return project


async def remove_project(name: str) -> ProjectInfo:
    """Forget a project (its repository and branches stay); refused while it has a run."""
    project = await Project.get_or_none(name=name)
    if project is None:
        raise ProjectNotFound(name)
    busy = await Task.filter(project_id=project.id, status__in=BUSY_STATUSES).count()
    if busy:
        raise ProjectBusy(f"{name!r} has {busy} queued or running task(s); cancel them first")
    info = ProjectInfo.of(project)
    await project.delete()
    return info


async def project_for_task(reference: str | None, cwd: Path | None = None) -> Project | None:
    """The project a new task belongs to: the one it names; else the registered repository
    that holds ``cwd`` (``orc new`` inside a project); else the only project; else none (a task
    without a project is tracked but cannot run). Several projects and no name: an error."""
    if reference is not None and reference.strip():
        return await find_project(reference)
    if cwd is not None:
        try:
            root = await repository_root(cwd)
        except NotAGitRepository:
            root = None
        if root is not None:
            here = await Project.get_or_none(path=str(root))
            if here is not None:
                return here
    if not await Project.exists():
        return None
    return await find_project(None)
