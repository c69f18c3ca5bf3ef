"""PATCH and DELETE /api/tasks/ID: fields, phases, allowed statuses; deleted tasks' usage stays."""

from __future__ import annotations

import pytest

from tests.api_client import (
    SONNET,
    ZERO,
    Api,
    assert_error,
)


def test_patch_changes_fields_phases_and_only_allowed_statuses(api: Api):
    task = api.create("draft")
    task_id = task["id"]
    changed = api.ok(api.patch(task_id, title="final title", description="longer", weight="small"))
    assert (changed["title"], changed["description"], changed["weight"]) == (
        "final title",
        "longer",
        "small",
    )
    assert changed["created_at"] == task["created_at"]
    assert changed["updated_at"] >= task["updated_at"]
    assert api.task(task_id)["title"] == "final title"

    # current_phase: entering a phase creates it; re-entering counts another iteration.
    for phase in ("plan", "implement", "review", "implement", "plan", "implement"):
        assert api.ok(api.patch(task_id, current_phase=phase))["current_phase"] == phase
    assert api.ok(api.patch(task_id, current_phase="implement"))["current_phase"] == "implement"
    phases = {p["name"]: p for p in api.task(task_id)["phases"]}
    assert [p["name"] for p in api.task(task_id)["phases"]] == ["plan", "implement", "review"]
    assert {name: p["iterations"] for name, p in phases.items()} == {
        "plan": 2,
        "implement": 3,  # the same phase again is no re-entry
        "review": 1,
    }
    assert phases["implement"]["status"] == "running"
    assert phases["implement"]["finished_at"] is None
    assert phases["plan"]["status"] == phases["review"]["status"] == "completed"
    assert phases["plan"]["finished_at"] is not None
    left = api.ok(api.patch(task_id, current_phase=None))
    assert left["current_phase"] is None
    assert {p["name"]: p["status"] for p in api.task(task_id)["phases"]}["implement"] == (
        "completed"
    )

    # status: planned only from created, blocked only from running or paused.
    assert api.ok(api.patch(task_id, status="planned"))["status"] == "planned"
    assert api.ok(api.patch(task_id, status="planned"))["status"] == "planned"  # no change
    conflict = assert_error(api.patch(task_id, status="blocked"), 409, "transition_not_allowed")
    assert "planned" in conflict["message"]
    api.start(task_id)
    conflict = assert_error(api.patch(task_id, status="planned"), 409, "transition_not_allowed")
    assert "running" in conflict["message"] and task_id in conflict["message"]
    assert api.ok(api.patch(task_id, status="blocked"))["status"] == "blocked"
    # ... and from paused.
    paused = api.create("paused before it started")["id"]
    api.ok(api.act(paused, "run"), 202)
    assert api.ok(api.act(paused, "pause"))["status"] == "paused"
    assert api.ok(api.patch(paused, status="blocked"))["status"] == "blocked"
    # A refused change leaves every other field of the same PATCH unapplied.
    before = api.task(task_id)
    assert_error(api.patch(task_id, status="planned", title="sneaky"), 409)
    assert api.task(task_id) == before

    for changes in (
        {},
        {"status": "running"},
        {"status": "completed"},
        {"title": None},
        {"title": ""},
        {"weight": None},
        {"weight": "huge"},
        {"status": None},
        {"current_phase": "two words"},
        {"current_phase": ""},
        {"current_phase": "x" * 65},
        {"title": 5},
        {"id": "TASK-999"},
        {"created_by": "someone"},
    ):
        assert_error(api.patch(task_id, **changes), 422, "validation_error")
    assert_error(api.http.patch(f"/api/tasks/{task_id}", content=b"{nope"), 400, "invalid_json")
    assert_error(api.http.patch(f"/api/tasks/{task_id}", content=b""), 400, "invalid_json")
    assert_error(api.http.patch(f"/api/tasks/{task_id}", json=["title"]), 422)
    assert api.task(task_id) == before
    assert_error(api.patch("TASK-999", title="x"), 404, "task_not_found")


def test_delete_answers_204_then_404_and_the_usage_still_counts(api: Api):
    kept = api.create("kept")["id"]
    gone = api.create("to delete")["id"]
    api.ok(api.patch(gone, current_phase="plan"))
    api.record(gone, {"model": SONNET, "input_tokens": 1_000_000})
    api.record(kept, {"model": SONNET, "input_tokens": 10})
    before = api.summary()

    deleted = api.http.delete(f"/api/tasks/{gone}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_error(api.http.get(f"/api/tasks/{gone}"), 404, "task_not_found")
    assert_error(api.http.delete(f"/api/tasks/{gone}"), 404, "task_not_found")
    assert_error(api.patch(gone, title="x"), 404, "task_not_found")
    assert_error(api.act(gone, "run"), 404, "task_not_found")
    assert_error(api.http.get(f"/api/tasks/{gone}/usage"), 404, "task_not_found")
    assert_error(
        api.http.post(f"/api/tasks/{gone}/usage", json={"model": SONNET}), 404, "task_not_found"
    )
    assert [t["id"] for t in api.ok(api.http.get("/api/tasks"))["items"]] == [kept]

    # The spend happened: it stays in the cost reports, under the deleted task's id.
    after = api.summary()
    assert after == {
        **before,
        "top_tasks": [
            {"task_id": gone, "title": None, "total_tokens": 1_000_000, "cost_usd": 3.0},
            {"task_id": kept, "title": "kept", "total_tokens": 10, "cost_usd": 0.00003},
        ],
    }
    assert after["today"]["total_tokens"] == 1_000_010
    assert after["today"]["cost_usd"] == pytest.approx(3.00003)

    # Ids are never reused, so a new task cannot inherit the deleted task's usage.
    newest = api.create("newest")["id"]
    assert newest == "TASK-003"
    assert api.http.delete(f"/api/tasks/{newest}").status_code == 204
    again = api.create("after deleting the newest")["id"]
    assert again == "TASK-004"
    assert api.usage(again)["tokens"] == ZERO


def test_patch_description_null_is_a_4xx_not_a_500(api: Api):
    """Regression (found by this suite): orc/api/schemas.py TaskPatch._not_empty:
    description=null is accepted and update_task writes NULL into the NOT NULL column
    task.description -> 500.
    """
    task_id = api.create("null description")["id"]
    response = api.patch(task_id, description=None)
    assert response.status_code != 500, response.text
    assert_error(response, 422, "validation_error")
