"""/api/tasks: list, create, read, change, delete, and the state actions."""

from __future__ import annotations

from sanic import Request
from sanic.response import HTTPResponse, empty, json

from orc.api.blueprint import JsonBlueprint
from orc.api.openapi_ext import openapi
from orc.api.openapi_schema import json_body
from orc.api.route_roles import identity_of, require_owner_or_admin
from orc.api.schemas import (
    ResumeBody,
    TaskCreate,
    TaskPatch,
    parse_body,
    query_choice,
    query_int,
)
from orc.auth.identity import LOCAL_OWNER
from orc.db.models import Task
from orc.errors import ApiError
from orc.projects.registry import project_for_task
from orc.runs.control import cancel_run, end_for_override, pause_run, queue_run, resume_run
from orc.runs.views import task_phases
from orc.tasks.lifecycle import (
    TaskNotFound,
    create_task,
    delete_task,
    format_task_id,
    get_task,
    list_tasks,
    parse_task_id,
    transition,
    update_task,
)
from orc.tasks.vocabulary import ACTIONS, STATUSES, WEIGHTS, vocabulary_json
from orc.usage.cost import usage_by_task

bp = JsonBlueprint("tasks")
MAX_PAGE_SIZE = 100


def task_number(task_id: str) -> int:
    """The number of a TASK-001 id from the path, or 404."""
    number = parse_task_id(task_id)
    if number is None:
        raise ApiError(404, "task_not_found", f"no task {task_id!r}; ids look like TASK-001")
    return number


async def check_may_change(request: Request, number: int) -> None:
    """Admins change any task; members only those they created (403 otherwise)."""
    if identity_of(request).can("admin"):
        return
    owner = await Task.filter(number=number).first().values_list("created_by", flat=True)
    if owner is None:
        raise TaskNotFound(format_task_id(number))
    require_owner_or_admin(request, str(owner), "a task")


@bp.get("/api/tasks")
async def tasks_index(request: Request) -> HTTPResponse:
    """Tasks, newest first, with tokens and cost; ``limit``, ``status``, ``weight``, and either
    ``before`` (a task id: the tasks older than it, as the previous answer's ``next_before``
    gives) or ``page``. ``before`` costs the same on every page; ``page`` grows with its depth."""
    limit = query_int(request, "limit", 20, 1, MAX_PAGE_SIZE)
    status = query_choice(request, "status", STATUSES)
    weight = query_choice(request, "weight", WEIGHTS)
    before = query_task_id(request, "before")
    if before is not None and "page" in request.args:
        raise ApiError(400, "bad_query", "give before or page, not both")
    page = query_int(request, "page", 1, 1, 1_000_000)
    found = await list_tasks(limit, status, weight, page=page, before=before)
    usage = await usage_by_task([task.number for task in found.items], request.app.ctx.prices)
    items = []
    for task in found.items:
        tokens, cost = usage.get(task.number, (0, 0.0))
        items.append({**task.to_json(), "total_tokens": tokens, "cost_usd": round(cost, 6)})
    next_before = None if found.next_before is None else format_task_id(found.next_before)
    body = {"items": items, "limit": limit, "total": found.total, "next_before": next_before}
    if before is None:
        body["page"] = page
    return json(body)


def query_task_id(request: Request, name: str) -> int | None:
    """The query parameter ``name`` as a task's number (``TASK-001``); None when absent."""
    raw = request.args.get(name)
    if raw is None:
        return None
    number = parse_task_id(raw)
    if number is None:
        raise ApiError(400, "bad_query", f"{name} must be a task id like TASK-001")
    return number


@bp.get("/api/vocabulary")
async def vocabulary(request: Request) -> HTTPResponse:
    """Task weights, statuses and actions (from which statuses, to which), for clients."""
    return json(vocabulary_json())


@bp.post("/api/tasks")
@openapi.body(json_body(TaskCreate))
async def tasks_create(request: Request) -> HTTPResponse:
    """Create a task."""
    body = parse_body(request, TaskCreate)
    identity = identity_of(request)
    # With auth on, a task is created by whoever is signed in (ownership depends on it).
    created_by = body.created_by if identity is LOCAL_OWNER else identity.subject
    project = await project_for_task(body.project)
    task = await create_task(
        body.title, body.description, body.weight, created_by, project, body.base, body.budget_usd
    )
    return json(task.to_json(), status=201, headers={"Location": f"/api/tasks/{task.id}"})


@bp.get("/api/tasks/<task_id>")
async def tasks_show(request: Request, task_id: str) -> HTTPResponse:
    """One task with its phases (status, iterations, duration, tokens, cost)."""
    number = task_number(task_id)
    detail = (await get_task(number)).to_json()
    phases = await task_phases(number, request.app.ctx.prices)
    return json({**detail, "phases": [phase.to_json() for phase in phases]})


@bp.patch("/api/tasks/<task_id>")
@openapi.body(json_body(TaskPatch))
async def tasks_update(request: Request, task_id: str) -> HTTPResponse:
    """Change title, description, weight, current_phase, or status (planned/blocked)."""
    number = task_number(task_id)
    body = parse_body(request, TaskPatch)
    await check_may_change(request, number)
    return json((await update_task(number, body.changes())).to_json())


@bp.delete("/api/tasks/<task_id>")
async def tasks_delete(request: Request, task_id: str) -> HTTPResponse:
    """Delete a task (its usage stays in the cost history)."""
    number = task_number(task_id)
    await check_may_change(request, number)
    await delete_task(number)
    return empty()


@bp.post("/api/tasks/<task_id>/<action>")
@openapi.parameter("action", openapi.String(enum=list(ACTIONS)), "path", required=True)
async def tasks_action(request: Request, task_id: str, action: str) -> HTTPResponse:
    """run (queue a run), pause, resume (``{"note": …}`` answers a blocked agent), cancel;
    complete and fail are admin overrides. 409 when the task's status does not allow it."""
    if action not in ACTIONS:
        raise ApiError(404, "not_found", f"unknown action {action!r}; use {', '.join(ACTIONS)}")
    number = task_number(task_id)
    note = None
    if action == "resume" and request.body and request.body.strip():
        note = parse_body(request, ResumeBody).note
    elif request.body and request.body.strip() not in (b"", b"{}"):
        raise ApiError(422, "validation_error", f"{action} takes no body")
    await check_may_change(request, number)
    identity = identity_of(request)
    if action == "run":
        result = await queue_run(number, identity.subject)
    elif action == "pause":
        result = await pause_run(number)
    elif action == "resume":
        result = await resume_run(number, note)
    elif action == "cancel":
        result = await cancel_run(number)
    else:
        if not identity.can("admin"):
            raise ApiError(403, "forbidden", f"{action} is an admin override of the run's outcome")
        await end_for_override(number, action)
        return json((await transition(number, action)).to_json())
    return json(result.to_json(), status=202 if result.status != "paused" else 200)
