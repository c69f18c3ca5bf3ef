"""Task runs over HTTP: the transcript, the branch diff, the run's status; projects."""

from __future__ import annotations

from pathlib import Path

from sanic import Request
from sanic.response import HTTPResponse, json

from orc.api.blueprint import JsonBlueprint
from orc.api.openapi_ext import openapi
from orc.api.openapi_schema import json_body
from orc.api.schemas import ProjectCreate, parse_body, query_int
from orc.api.task_routes import task_number
from orc.projects.registry import add_project, list_projects, remove_project
from orc.runs.transcript import PAGE_LIMIT, transcript_page
from orc.runs.views import run_status, task_diff
from orc.tasks.lifecycle import get_task

bp = JsonBlueprint("runs")


@bp.get("/api/tasks/<task_id>/transcript")
async def transcript_index(request: Request, task_id: str) -> HTTPResponse:
    """The task's transcript after entry ``after`` (oldest first), up to ``limit`` entries."""
    number = task_number(task_id)
    after = query_int(request, "after", 0, 0, 2**62)
    limit = query_int(request, "limit", 100, 1, PAGE_LIMIT)
    await get_task(number)  # 404 for a task that does not exist
    items = await transcript_page(number, after, limit)
    return json({"items": items, "after": items[-1]["id"] if items else after})


@bp.get("/api/tasks/<task_id>/diff")
async def diff_show(request: Request, task_id: str) -> HTTPResponse:
    """The task's branch against the commit it started from (committed work), and where to
    fetch the branch from when the project is read-only."""
    diff = await task_diff(task_number(task_id), request.app.ctx.settings.home)
    return json(diff.to_json())


@bp.get("/api/tasks/<task_id>/runs/latest")
async def run_show(request: Request, task_id: str) -> HTTPResponse:
    """Where the task's latest run stands: phase, iteration, tokens, cost; its phases (status,
    iterations, duration, tokens, cost), its branch and, for a read-only project, where to
    fetch the branch from."""
    ctx = request.app.ctx
    status = await run_status(task_number(task_id), ctx.prices, ctx.settings.home)
    return json(status.to_json())


@bp.get("/api/projects")
async def projects_index(request: Request) -> HTTPResponse:
    """Registered projects."""
    return json({"items": [project.to_json() for project in await list_projects()]})


@bp.post("/api/projects")
@openapi.body(json_body(ProjectCreate))
async def projects_create(request: Request) -> HTTPResponse:
    """Register a git repository on the server's disk (admins)."""
    body = parse_body(request, ProjectCreate)
    project, created = await add_project(Path(body.path), body.name)
    return json(project.to_json(), status=201 if created else 200)


@bp.delete("/api/projects/<name>")
async def projects_delete(request: Request, name: str) -> HTTPResponse:
    """Forget a project (admins); its repository, branches and tasks stay."""
    return json((await remove_project(name)).to_json())
