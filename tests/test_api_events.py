"""GET /api/events: every change, in order, after any id; filtered by task."""

from __future__ import annotations

from tests.api_client import (
    HAIKU,
    SONNET,
    Api,
    assert_error,
    tokens,
)


def test_events_since_lists_every_change_in_order(api: Api):
    empty = api.ok(api.http.get("/api/events"))
    assert empty == {
        "events": [],
        "last_id": 0,
        "more": False,
        "oldest_id": None,
        "truncated": False,
    }

    task_id = api.create("watched")["id"]
    api.ok(api.patch(task_id, title="renamed"))
    api.ok(api.patch(task_id, current_phase="plan"))
    api.ok(api.act(task_id, "run"), 202)
    api.record(task_id, {"model": SONNET, "input_tokens": 3}, {"model": HAIKU, "output_tokens": 4})
    api.ok(api.act(task_id, "pause"))  # a queued run pauses at once
    assert api.http.delete(f"/api/tasks/{task_id}").status_code == 204

    events = api.events()
    assert [e["event_type"] for e in events] == [
        "task_created",
        "task_updated",
        "task_updated",
        "phase",
        "state",
        "tokens",
        "phase",  # the pause stops the running phase
        "state",
        "task_deleted",
    ]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(e["type"] == "event" and e["task_id"] == task_id for e in events)
    created, renamed, _, phase, run, used, stopped, paused, deleted = (e["data"] for e in events)
    assert (created["id"], created["title"], created["status"]) == (task_id, "watched", "created")
    assert renamed["title"] == "renamed" and renamed["changed"] == ["title"]
    assert (phase["name"], phase["status"], phase["iterations"]) == ("plan", "running", 1)
    assert (run["from"], run["to"], run["action"]) == ("created", "queued", "run")
    assert used["recorded"] == 2 and used["tokens"] == tokens(3, 4)
    assert sorted(used["models"]) == sorted([SONNET, HAIKU])
    assert (stopped["name"], stopped["status"]) == ("plan", "paused")
    assert (paused["from"], paused["to"], paused["action"]) == ("queued", "paused", "pause")
    assert deleted == {"id": task_id}

    # since= returns exactly what came after, in order.
    for cut in range(len(events)):
        assert api.events(since=ids[cut]) == events[cut + 1 :]
    page = api.ok(api.http.get("/api/events", params={"since": ids[1], "limit": 2}))
    assert page["events"] == events[2:4]
    assert (page["last_id"], page["more"], page["oldest_id"]) == (ids[3], True, ids[0])
    assert api.ok(api.http.get("/api/events", params={"since": ids[-1]}))["last_id"] == ids[-1]

    other = api.create("other")["id"]
    api.ok(api.act(other, "run"), 202)
    only_other = api.events(task_id=other)
    assert [e["event_type"] for e in only_other] == ["task_created", "state"]
    assert api.events(since=ids[-1]) == only_other

    for params in ({"since": -1}, {"since": "x"}, {"limit": 0}, {"limit": 1001}, {"task_id": "x"}):
        assert_error(api.http.get("/api/events", params=params), 400, "bad_query")


def test_a_non_canonical_task_id_means_the_same_task_everywhere(api: Api):
    """Regression (found by this suite): orc/api/event_routes.py events_index (and the WebSocket
    subscribe): TASK-1 and TASK-0001 are accepted as ids of TASK-001 by the task routes, but the
    event filter compares the raw string, so ?task_id=TASK-1 silently matches nothing.
    """
    task_id = api.create("aliased")["id"]
    number = int(task_id.removeprefix("TASK-"))
    alias = f"TASK-{number}"  # TASK-1 for TASK-001, TASK-0012 for TASK-012 …
    alias = alias if alias != task_id else f"TASK-0{number}"
    assert api.task(alias)["id"] == task_id  # the task routes resolve the alias
    by_alias = api.http.get("/api/events", params={"task_id": alias})
    if by_alias.status_code == 200:
        assert by_alias.json()["events"] == api.events(task_id=task_id)
    else:
        assert_error(by_alias, 400)
