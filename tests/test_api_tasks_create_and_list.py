"""POST /api/tasks, GET /api/tasks/ID and GET /api/tasks: ids, pages, filters, listed usage."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from orc.tasks.vocabulary import WEIGHTS
from tests.api_client import (
    HAIKU,
    JSON,
    SONNET,
    UNPRICED,
    Api,
    assert_error,
)


def _create_27_tasks(api: Api) -> tuple[httpx.Response, JSON, JSON, list[httpx.Response]]:
    """Three tasks one after the other, then 24 at once (weights in turn)."""
    first = api.http.post(
        "/api/tasks", json={"title": "  first  ", "description": "d", "weight": "large"}
    )
    second, third = api.create("second"), api.create("third")

    def create(i: int) -> httpx.Response:
        weight = WEIGHTS[i % len(WEIGHTS)]
        return api.http.post("/api/tasks", json={"title": f"parallel {i}", "weight": weight})

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(create, range(24)))
    return first, second, third, responses


def test_tasks_get_sequential_ids_none_lost_or_repeated_when_created_at_once(api: Api):
    first, second, third, responses = _create_27_tasks(api)
    assert first.status_code == 201
    assert first.headers["location"] == "/api/tasks/TASK-001"
    body = first.json()
    assert body["id"] == "TASK-001"
    assert body["title"] == "first"
    assert (body["weight"], body["status"], body["current_phase"]) == ("large", "created", None)
    assert second["id"] == "TASK-002"
    assert third["weight"] == "medium"  # the default

    assert [r.status_code for r in responses] == [201] * 24
    ids = [r.json()["id"] for r in responses]
    assert sorted(ids) == [f"TASK-{n:03d}" for n in range(4, 28)]
    assert all(r.headers["location"] == f"/api/tasks/{r.json()['id']}" for r in responses)

    shown = api.task("TASK-001")
    assert shown == {**body, "phases": []}
    for response in responses[:3]:
        assert api.task(response.json()["id"])["title"] == response.json()["title"]


def test_pages_list_every_task_once_newest_first_and_bad_queries_are_400(api: Api):
    _create_27_tasks(api)
    # `total` counts everything, the pages together list every task once.
    page1 = api.ok(api.http.get("/api/tasks", params={"limit": 10}))
    assert (page1["page"], page1["limit"], page1["total"]) == (1, 10, 27)
    assert [t["id"] for t in page1["items"]] == [f"TASK-{n:03d}" for n in range(27, 17, -1)]
    seen = []
    for page in (1, 2, 3, 4):
        listing = api.ok(api.http.get("/api/tasks", params={"page": page, "limit": 10}))
        assert listing["total"] == 27
        seen += [t["id"] for t in listing["items"]]
    assert seen == [f"TASK-{n:03d}" for n in range(27, 0, -1)]
    assert api.ok(api.http.get("/api/tasks", params={"page": 4, "limit": 10}))["items"] == []
    default = api.ok(api.http.get("/api/tasks"))
    assert (default["page"], default["limit"], len(default["items"])) == (1, 20, 20)
    assert len(api.ok(api.http.get("/api/tasks", params={"limit": 100}))["items"]) == 27

    for params in (
        {"limit": 101},
        {"limit": 0},
        {"limit": "ten"},
        {"page": 0},
        {"page": -1},
        {"page": "x"},
        {"page": "1.5"},
        {"status": "sleeping"},
        {"weight": "huge"},
    ):
        assert_error(api.http.get("/api/tasks", params=params), 400, "bad_query")


def test_every_page_from_either_end_lists_its_tasks_and_says_where_the_next_begins(api: Api):
    """The pages past the middle are read from the oldest task (total says where they lie)."""
    _, _, _, responses = _create_27_tasks(api)
    small = sorted(
        (int(r.json()["id"][5:]) for r in responses if r.json()["weight"] == "small"), reverse=True
    )
    for params, numbers in (({}, list(range(27, 0, -1))), ({"weight": "small"}, small)):
        for limit in (1, 4, 5, 10, len(numbers) - 1, len(numbers)):
            pages = -(-len(numbers) // limit)
            for page in range(1, pages + 2):
                query = {**params, "page": page, "limit": limit}
                listing = api.ok(api.http.get("/api/tasks", params=query))
                expected = numbers[(page - 1) * limit : page * limit]
                assert [t["id"] for t in listing["items"]] == [f"TASK-{n:03d}" for n in expected]
                last = page >= pages
                assert listing["next_before"] == (None if last else f"TASK-{expected[-1]:03d}")
                assert listing["total"] == len(numbers)


def test_the_list_filters_by_status_and_by_weight_and_both(api: Api):
    _, _, _, responses = _create_27_tasks(api)
    for task_id in ("TASK-004", "TASK-005"):
        api.start(task_id)
    running = api.ok(api.http.get("/api/tasks", params={"status": "running"}))
    assert [t["id"] for t in running["items"]] == ["TASK-005", "TASK-004"]
    assert running["total"] == 2
    small = api.ok(api.http.get("/api/tasks", params={"weight": "small", "limit": 100}))
    expected_small = sorted(r.json()["id"] for r in responses if r.json()["weight"] == "small")
    assert sorted(t["id"] for t in small["items"]) == expected_small
    assert small["total"] == len(expected_small) == 6
    both = api.ok(api.http.get("/api/tasks", params={"weight": "trivial", "status": "running"}))
    trivial_running = sorted(
        (
            r.json()["id"]
            for r in responses
            if r.json()["weight"] == "trivial" and r.json()["id"] in ("TASK-004", "TASK-005")
        ),
        reverse=True,  # newest first
    )
    assert [t["id"] for t in both["items"]] == trivial_running
    nothing = api.ok(api.http.get("/api/tasks", params={"status": "failed"}))
    assert (nothing["items"], nothing["total"]) == ([], 0)


def test_task_list_items_carry_their_total_tokens_and_cost(api: Api):
    """The dashboard's table: each listed task's tokens and cost equal its own usage report."""
    quiet = api.create("no usage yet")["id"]
    busy = api.create("two models")["id"]
    api.record(
        busy,
        {"model": SONNET, "phase": "plan", "input_tokens": 1200, "output_tokens": 300},
        {"model": HAIKU, "phase": "code", "input_tokens": 50, "cache_read_tokens": 7},
        {"model": UNPRICED, "phase": "code", "output_tokens": 11},
    )
    listed = {item["id"]: item for item in api.ok(api.http.get("/api/tasks"))["items"]}
    report = api.usage(busy)
    assert listed[busy]["total_tokens"] == sum(report["tokens"].values()) == 1568
    assert listed[busy]["cost_usd"] == pytest.approx(report["cost_usd"], abs=1e-6)
    assert listed[busy]["cost_usd"] > 0
    assert (listed[quiet]["total_tokens"], listed[quiet]["cost_usd"]) == (0, 0)
    # The list shows each task as its own page does (project, times, branch, ...).
    for task_id in (quiet, busy):
        detail = api.ok(api.http.get(f"/api/tasks/{task_id}"))
        shared = listed[task_id].keys() & detail.keys()
        assert {"project", "created_at", "updated_at", "branch", "budget_usd"} <= shared
        assert {key: listed[task_id][key] for key in shared} == {key: detail[key] for key in shared}
    # A filtered page reads the usage of its own tasks only and still gets them right.
    created = api.ok(api.http.get("/api/tasks", params={"status": "created"}))
    assert {i["id"]: i["total_tokens"] for i in created["items"]}[busy] == 1568
