"""Projects: git repositories registered by path, found by name or path, removed when idle."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orc.db.models import Task
from orc.errors import OrcError
from orc.projects.registry import (
    NotAGitRepository,
    ProjectNotFound,
    add_project,
    find_project,
    list_projects,
    remove_project,
)


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


async def test_a_repository_is_registered_once_under_its_folder_name(store, tmp_path):
    repo = make_repo(tmp_path / "my app")
    (repo / "src").mkdir()
    project, created = await add_project(repo / "src")  # inside it: the top level counts
    assert created and project.name == "my-app" and project.path == str(repo.resolve())
    again, created_again = await add_project(repo)
    assert again == project and not created_again
    assert await list_projects() == [project]


async def test_bad_paths_and_names_are_clear_errors(store, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(NotAGitRepository) as error:
        await add_project(plain)
    assert error.value.status == 400 and "git init" in error.value.message
    repo = make_repo(tmp_path / "repo")
    with pytest.raises(OrcError) as bad_name:
        await add_project(repo, name="../etc")
    assert bad_name.value.code == "bad_project_name"
    await add_project(repo, name="api")
    other = make_repo(tmp_path / "other")
    with pytest.raises(OrcError) as taken:
        await add_project(other, name="api")
    assert (taken.value.status, taken.value.code) == (409, "project_exists")


async def test_a_task_finds_its_project_by_name_path_or_as_the_only_one(store, tmp_path):
    with pytest.raises(OrcError) as none:
        await find_project(None)
    assert none.value.code == "project_required" and "orc init" in none.value.message
    first, _ = await add_project(make_repo(tmp_path / "first"))
    assert (await find_project(None)).id == first.id
    second, _ = await add_project(make_repo(tmp_path / "second"))
    with pytest.raises(OrcError) as ambiguous:
        await find_project("")
    assert ambiguous.value.code == "project_required"
    assert (await find_project("second")).id == second.id
    assert (await find_project(str(tmp_path / "first"))).id == first.id
    with pytest.raises(ProjectNotFound):
        await find_project("third")


async def test_a_project_with_a_queued_task_cannot_be_removed(store, tmp_path):
    project, _ = await add_project(make_repo(tmp_path / "repo"))
    task = await Task.create(title="t", weight="trivial", status="queued", project_id=project.id)
    with pytest.raises(OrcError) as busy:
        await remove_project(project.name)
    assert (busy.value.status, busy.value.code) == (409, "project_busy")
    task.status = "completed"
    await task.save()
    assert await remove_project(project.name) == project
    await task.refresh_from_db()
    assert task.project_id is None  # the task and its branch stay
