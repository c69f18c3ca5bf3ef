"""POST /api/tasks/ID/ACTION: each action from exactly its statuses, and what it does to phases."""

from __future__ import annotations

from orc.tasks.vocabulary import ACTIONS, STATUSES
from tests.api_client import (
    Api,
    assert_error,
)

ROUTES: dict[str, list[tuple[str, str]]] = {
    "created": [],
    "planned": [("patch", "planned")],
    "queued": [("act", "run")],
    "running": [("start", "")],
    "paused": [("act", "run"), ("act", "pause")],
    "blocked": [("start", ""), ("block", "")],
    "completed": [("act", "run"), ("act", "complete")],
    "failed": [("act", "run"), ("act", "cancel")],
}
# What a request does at once. A running task's pause and cancel are requests to its worker
# (202): the task stays running until the worker acts on them.
AT_ONCE = {("pause", "running"): "running", ("cancel", "running"): "running"}


def task_in(api: Api, status: str) -> str:
    from orc.runs.claims import end_run

    task_id = api.create(f"a {status} task")["id"]
    for how, what in ROUTES[status]:
        if how == "start":
            api.start(task_id)
        elif how == "block":  # the agent asked a question: what the worker records
            api.live.run(end_run(api.claims[task_id], "blocked", "Which greeting?"))
        else:
            response = api.act(task_id, what) if how == "act" else api.patch(task_id, status=what)
            assert response.status_code in (200, 202), response.text
    assert api.task(task_id)["status"] == status
    return task_id


def test_every_action_is_allowed_exactly_from_its_statuses(api: Api):
    assert set(ROUTES) == set(STATUSES)
    for action, (allowed_from, target) in ACTIONS.items():
        for status in STATUSES:
            task_id = task_in(api, status)
            response = api.act(task_id, action)
            if status in allowed_from:
                assert response.status_code in (200, 202), (action, status, response.text)
                expected = AT_ONCE.get((action, status), target)
                assert api.task(task_id)["status"] == expected, (action, status)
            else:
                body = assert_error(response, 409, "transition_not_allowed")
                assert status in body["message"], body
                assert action in body["message"] and task_id in body["message"], body
                assert api.task(task_id)["status"] == status, (action, status)

    # complete and fail end the current phase with the task's outcome.
    for action, outcome in (("complete", "completed"), ("fail", "failed")):
        task_id = task_in(api, "running")
        api.ok(api.patch(task_id, current_phase="implement"))
        api.ok(api.act(task_id, action))
        (phase,) = api.task(task_id)["phases"]
        assert (phase["name"], phase["status"]) == ("implement", outcome)
        assert phase["finished_at"] is not None

    task_id = task_in(api, "created")
    unknown = assert_error(api.act(task_id, "explode"), 404, "not_found")
    assert "explode" in unknown["message"]
    assert_error(api.http.get(f"/api/tasks/{task_id}/run"), 405)
    assert_error(api.http.post(f"/api/tasks/{task_id}/run", json={"force": True}), 422)
    assert api.task(task_id)["status"] == "created"
    for bad_id in ("TASK-999", "TASK-0", "bogus"):
        assert_error(api.act(bad_id, "run"), 404, "task_not_found")
