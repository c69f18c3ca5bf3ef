"""Tasks, usage, cost, events and metrics through a real `orc serve`, on SQLite and PostgreSQL.

Each test function starts one server (two runs: one per database) and groups related checks on it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orc.tasks.vocabulary import ACTIONS, STATUSES, WEIGHTS
from orc.usage.pricing import DEFAULT_PRICES, TOKEN_TYPES, PriceList
from tests.support import OrcServer, run_orc

JSON = dict[str, Any]
PRICES = PriceList(dict(DEFAULT_PRICES))
SONNET = "claude-sonnet-4-5"
HAIKU = "claude-haiku-4-5"
UNPRICED = "acme-llm-1"
ZERO = dict.fromkeys(TOKEN_TYPES, 0)


class Api:
    """An HTTP client for one orc server, with the calls these tests repeat."""

    def __init__(self, server: OrcServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.base_url, timeout=15)

    def close(self) -> None:
        self.http.close()

    def create(self, title: str = "a task", **fields: Any) -> JSON:
        response = self.http.post("/api/tasks", json={"title": title, **fields})
        assert response.status_code == 201, response.text
        return response.json()

    def task(self, task_id: str) -> JSON:
        response = self.http.get(f"/api/tasks/{task_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def patch(self, task_id: str, **changes: Any) -> httpx.Response:
        return self.http.patch(f"/api/tasks/{task_id}", json=changes)

    def act(self, task_id: str, action: str) -> httpx.Response:
        return self.http.post(f"/api/tasks/{task_id}/{action}")

    def ok(self, response: httpx.Response, status: int = 200) -> JSON:
        assert response.status_code == status, response.text
        return response.json()

    def record(self, task_id: str, *events: JSON) -> JSON:
        body = events[0] if len(events) == 1 else {"events": list(events)}
        return self.ok(self.http.post(f"/api/tasks/{task_id}/usage", json=body), 201)

    def usage(self, task_id: str) -> JSON:
        return self.ok(self.http.get(f"/api/tasks/{task_id}/usage"))

    def summary(self) -> JSON:
        body = self.ok(self.http.get("/api/cost/summary"))
        body.pop("generated_at")
        return body

    def events(self, since: int = 0, **params: Any) -> list[JSON]:
        """Every event after ``since``, following the pages."""
        found: list[JSON] = []
        while True:
            page = self.ok(self.http.get("/api/events", params={"since": since, **params}))
            found += page["events"]
            since = page["last_id"]
            if not page["more"]:
                return found

    def last_event_id(self) -> int:
        events = self.events()
        return events[-1]["id"] if events else 0

    def metrics(self) -> str:
        response = self.http.get("/api/metrics")
        assert response.status_code == 200
        return response.text


@pytest.fixture
def api(server_factory, orc_env) -> Iterator[Api]:
    client = Api(server_factory(orc_env, "--no-worker").start())
    yield client
    client.close()


def assert_error(response: httpx.Response, status: int, error: str | None = None) -> JSON:
    """A 4xx with the JSON error shape {"error": code, "message": text}."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message"}, body
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["message"], str) and body["message"]
    if error is not None:
        assert body["error"] == error, body
    return body


def tokens(
    input: int = 0, output: int = 0, cache_read: int = 0, cache_write: int = 0
) -> dict[str, int]:
    return {"input": input, "output": output, "cache_read": cache_read, "cache_write": cache_write}


def add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {kind: a[kind] + b[kind] for kind in TOKEN_TYPES}


def event_tokens(event: JSON) -> dict[str, int]:
    return {kind: event.get(f"{kind}_tokens", 0) for kind in TOKEN_TYPES}


def metric_samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{sorted label items: value} of every sample called ``name``."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


# --- create, read, list -------------------------------------------------------------------------


def test_create_get_and_list_tasks_with_pagination_and_filters(api: Api):
    first = api.http.post(
        "/api/tasks", json={"title": "  first  ", "description": "d", "weight": "large"}
    )
    assert first.status_code == 201
    assert first.headers["location"] == "/api/tasks/TASK-001"
    body = first.json()
    assert body["id"] == "TASK-001"
    assert body["title"] == "first"
    assert (body["weight"], body["status"], body["current_phase"]) == ("large", "created", None)
    assert api.create("second")["id"] == "TASK-002"
    assert api.create("third")["weight"] == "medium"  # the default

    # Concurrent creates: every task gets its own id, none is lost or repeated.
    def create(i: int) -> httpx.Response:
        weight = WEIGHTS[i % len(WEIGHTS)]
        return httpx.post(
            api.server.base_url + "/api/tasks",
            json={"title": f"parallel {i}", "weight": weight},
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(create, range(24)))
    assert [r.status_code for r in responses] == [201] * 24
    ids = [r.json()["id"] for r in responses]
    assert sorted(ids) == [f"TASK-{n:03d}" for n in range(4, 28)]
    assert all(r.headers["location"] == f"/api/tasks/{r.json()['id']}" for r in responses)

    shown = api.task("TASK-001")
    assert shown == {**body, "phases": []}
    for response in responses[:3]:
        assert api.task(response.json()["id"])["title"] == response.json()["title"]

    # Pages: newest first, `total` counts everything, the pages together list every task once.
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

    # Filters.
    for task_id in ("TASK-004", "TASK-005"):
        api.ok(api.act(task_id, "run"))
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


# --- PATCH --------------------------------------------------------------------------------------


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
    api.ok(api.act(task_id, "run"))
    conflict = assert_error(api.patch(task_id, status="planned"), 409, "transition_not_allowed")
    assert "running" in conflict["message"] and task_id in conflict["message"]
    assert api.ok(api.patch(task_id, status="blocked"))["status"] == "blocked"
    assert api.ok(api.act(task_id, "run"))["status"] == "running"
    api.ok(api.act(task_id, "pause"))
    assert api.ok(api.patch(task_id, status="blocked"))["status"] == "blocked"
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


# --- actions ------------------------------------------------------------------------------------

# How to bring a new task to each status.
ROUTES: dict[str, list[tuple[str, str]]] = {
    "created": [],
    "planned": [("patch", "planned")],
    "running": [("act", "run")],
    "paused": [("act", "run"), ("act", "pause")],
    "blocked": [("act", "run"), ("patch", "blocked")],
    "completed": [("act", "run"), ("act", "complete")],
    "failed": [("act", "run"), ("act", "fail")],
}


def task_in(api: Api, status: str) -> str:
    task_id = api.create(f"a {status} task")["id"]
    for how, what in ROUTES[status]:
        response = api.act(task_id, what) if how == "act" else api.patch(task_id, status=what)
        api.ok(response)
    assert api.task(task_id)["status"] == status
    return task_id


def test_every_action_is_allowed_exactly_from_its_statuses(api: Api):
    assert set(ROUTES) == set(STATUSES)
    for action, (allowed_from, target) in ACTIONS.items():
        for status in STATUSES:
            task_id = task_in(api, status)
            response = api.act(task_id, action)
            if status in allowed_from:
                assert api.ok(response)["status"] == target, (action, status)
                assert api.task(task_id)["status"] == target
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


# --- DELETE -------------------------------------------------------------------------------------


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


# --- bad input ----------------------------------------------------------------------------------

MIB = 1024 * 1024


def test_bad_input_answers_4xx_json_and_writes_nothing(api: Api):
    task_id = api.create("target")["id"]
    api.record(task_id, {"model": SONNET, "input_tokens": 5, "output_tokens": 7})
    usage_before = api.usage(task_id)
    task_before = api.task(task_id)
    last_event = api.last_event_id()

    post_task = "/api/tasks"
    post_usage = f"/api/tasks/{task_id}/usage"
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    good = {"model": SONNET, "input_tokens": 1}
    cases: list[tuple[str, Any, int, str]] = [
        # (path, body: bytes are sent raw, anything else as JSON, status, error code)
        (post_task, b"{not json", 400, "invalid_json"),
        (post_task, b"", 400, "invalid_json"),
        (post_task, b"   ", 400, "invalid_json"),
        (post_task, [], 422, "validation_error"),
        (post_task, "title", 422, "validation_error"),
        (post_task, {}, 422, "validation_error"),
        (post_task, {"title": 5}, 422, "validation_error"),
        (post_task, {"title": ""}, 422, "validation_error"),
        (post_task, {"title": "t" * 201}, 422, "validation_error"),
        (post_task, {"title": "x", "weight": "huge"}, 422, "validation_error"),
        (post_task, {"title": "x", "status": "running"}, 422, "validation_error"),
        (post_task, {"title": "x", "colour": "red"}, 422, "validation_error"),
        (post_task, {"title": "x", "description": "d" * (MIB + 16)}, 413, None),
        (post_usage, b"{", 400, "invalid_json"),
        (post_usage, b"", 400, "invalid_json"),
        (post_usage, [good], 422, "validation_error"),
        (post_usage, {}, 422, "validation_error"),
        (post_usage, {"input_tokens": 1}, 422, "validation_error"),
        (post_usage, {"model": ""}, 422, "validation_error"),
        (post_usage, {"model": 5}, 422, "validation_error"),
        (post_usage, {**good, "input_tokens": "12"}, 422, "validation_error"),
        (post_usage, {**good, "input_tokens": 1.5}, 422, "validation_error"),
        (post_usage, {**good, "input_tokens": 2.0}, 422, "validation_error"),
        (post_usage, {**good, "output_tokens": True}, 422, "validation_error"),
        (post_usage, {**good, "cache_read_tokens": None}, 422, "validation_error"),
        (post_usage, {**good, "input_tokens": -1}, 422, "validation_error"),
        (post_usage, {**good, "cache_write_tokens": -(10**6)}, 422, "validation_error"),
        (post_usage, {**good, "output_tokens": 10**9 + 1}, 422, "validation_error"),
        (post_usage, {**good, "input_tokens": 10**30}, 422, "validation_error"),
        (post_usage, {**good, "tokens": 3}, 422, "validation_error"),
        (post_usage, {**good, "task_id": task_id}, 422, "validation_error"),
        (post_usage, {**good, "occurred_at": future}, 422, "validation_error"),
        (post_usage, {**good, "occurred_at": "yesterday"}, 422, "validation_error"),
        (post_usage, {"events": []}, 422, "validation_error"),
        (post_usage, {"events": good}, 422, "validation_error"),
        (post_usage, {"events": [good], "extra": 1}, 422, "validation_error"),
        (post_usage, {"events": [good] * 1001}, 422, "validation_error"),
        (post_usage, {"events": [good] * 999 + [{**good, "input_tokens": -1}]}, 422, None),
        (post_usage, {"events": [good] * 10 + [{**good, "occurred_at": future}]}, 422, None),
        (post_usage, {"events": [good, {**good, "surprise": True}]}, 422, None),
        (post_usage, {"model": SONNET, "phase": "p" * (MIB + 16)}, 413, None),
    ]
    for path, body, status, error in cases:
        if isinstance(body, bytes):
            response = api.http.post(path, content=body)
        else:
            response = api.http.post(path, json=body)
        try:
            assert_error(response, status, error)
        except AssertionError as exc:
            shown = body if len(repr(body)) < 200 else repr(body)[:200] + "…"
            raise AssertionError(f"POST {path} {shown}: {exc}") from None
    too_big = assert_error(api.http.post(post_usage, json={"events": [good] * 1001}), 422)
    assert "1000" in too_big["message"]
    negative = assert_error(api.http.post(post_usage, json={**good, "input_tokens": -1}), 422)
    assert "input_tokens" in negative["message"]

    # Unknown and malformed task ids: 404 JSON on every task route.
    for bad_id in (
        "TASK-999",
        "TASK-0",
        "TASK-",
        "bogus",
        "task-001",
        "TASK-01x",
        "TASK-1234567890",
    ):
        for method, path, body in (
            ("GET", f"/api/tasks/{bad_id}", None),
            ("PATCH", f"/api/tasks/{bad_id}", {"title": "x"}),
            ("DELETE", f"/api/tasks/{bad_id}", None),
            ("POST", f"/api/tasks/{bad_id}/run", None),
            ("GET", f"/api/tasks/{bad_id}/usage", None),
            ("POST", f"/api/tasks/{bad_id}/usage", good),
        ):
            response = api.http.request(method, path, json=body)
            try:
                assert_error(response, 404, "task_not_found")
            except AssertionError as exc:
                raise AssertionError(f"{method} {path}: {exc}") from None

    # Odd raw bodies: always the JSON error shape, never HTML or a 500.
    for path in (post_task, post_usage):
        for raw in (b"\xff\xfe", b"null", b"0", b'"x"', b"[]", b"{}", b'{"title": NaN}'):
            response = api.http.post(path, content=raw)
            assert 400 <= response.status_code < 500, (path, raw, response.text)
            assert set(json.loads(response.text)) == {"error", "message"}

    # Nothing of it was written.
    assert api.usage(task_id) == usage_before
    assert api.task(task_id) == task_before
    assert api.events(since=last_event) == []
    assert api.ok(api.http.get("/api/tasks"))["total"] == 1

    # The limits themselves are accepted: a batch of exactly 1000, the largest token count.
    recorded = api.record(task_id, *([good] * 999 + [{"model": SONNET, "output_tokens": 10**9}]))
    assert recorded["recorded"] == 1000
    assert api.usage(task_id)["tokens"] == add(usage_before["tokens"], tokens(999, 10**9))


# --- usage and cost -----------------------------------------------------------------------------


def test_usage_totals_by_phase_and_model_with_cost_and_cost_reports(api: Api):
    main = api.create("main")["id"]
    other = api.create("other")["id"]
    api.ok(api.patch(main, current_phase="plan"))

    one = {
        "model": SONNET,
        "input_tokens": 1000,
        "output_tokens": 2000,
        "cache_read_tokens": 3000,
        "cache_write_tokens": 4000,
    }
    assert api.record(main, one) == {
        "recorded": 1,
        "tokens": tokens(1000, 2000, 3000, 4000),
        "models": [SONNET],
    }
    batch = [
        {"model": SONNET, "phase": "implement", "input_tokens": 600_000, "output_tokens": 1},
        {"model": SONNET, "phase": "implement", "input_tokens": 400_000, "output_tokens": 999_999},
        {"model": f"{SONNET}-20250929", "phase": "implement", "input_tokens": 500_000},
        {"model": HAIKU, "phase": "implement", "output_tokens": 200_000},
        {"model": UNPRICED, "phase": "implement", "input_tokens": 777, "output_tokens": 1},
    ]
    assert api.record(main, *batch)["recorded"] == 5
    api.record(other, {"model": SONNET, "input_tokens": 100_000})
    yesterday = datetime.now(UTC) - timedelta(days=1)
    api.record(
        other,
        {"model": SONNET, "output_tokens": 1_000, "occurred_at": yesterday.isoformat()},
    )

    usage = api.usage(main)
    # $3 per million input, $15 output, $0.30 cache read, $3.75 cache write (claude-sonnet-4-5).
    plan_cost = (1000 * 3 + 2000 * 15 + 3000 * 0.30 + 4000 * 3.75) / 1_000_000
    assert plan_cost == pytest.approx(0.0489)
    rows = {(r["phase"], r["model"]): r for r in usage["by_phase_and_model"]}
    assert list(rows) == [
        ("implement", UNPRICED),
        ("implement", HAIKU),
        ("implement", SONNET),
        ("implement", f"{SONNET}-20250929"),
        ("plan", SONNET),  # the phase defaults to the task's current phase
    ]
    assert rows["plan", SONNET]["tokens"] == tokens(1000, 2000, 3000, 4000)
    assert rows["plan", SONNET]["cost_usd"] == pytest.approx(plan_cost, abs=1e-6)
    assert rows["implement", SONNET]["events"] == 2
    assert rows["implement", SONNET]["tokens"] == tokens(1_000_000, 1_000_000)
    assert rows["implement", SONNET]["cost_usd"] == pytest.approx(18.0)
    # A dated model name is priced as its family.
    assert rows["implement", f"{SONNET}-20250929"]["cost_usd"] == pytest.approx(1.5)
    assert rows["implement", HAIKU]["cost_usd"] == pytest.approx(1.0)  # $5 per million output
    assert rows["implement", UNPRICED]["cost_usd"] == 0
    assert rows["implement", UNPRICED]["tokens"] == tokens(777, 1)
    assert usage["unpriced_models"] == [UNPRICED]
    assert usage["tokens"] == tokens(
        1000 + 1_000_000 + 500_000 + 777, 2000 + 1_000_000 + 200_001, 3000, 4000
    )
    main_cost = plan_cost + 18.0 + 1.5 + 1.0
    assert usage["cost_usd"] == pytest.approx(main_cost, abs=1e-6)
    assert usage["task_id"] == main
    assert api.usage(other)["tokens"] == tokens(100_000, 1_000)

    # Summary: today / this week / this month (UTC), by model, top tasks.
    today = datetime.now(UTC).date()
    yesterday_in = {
        "today": False,
        "week": today.weekday() != 0,
        "month": today.day != 1,
    }
    yesterday_tokens = tokens(0, 1_000)
    yesterday_cost = 1_000 * 15 / 1_000_000
    today_tokens = add(usage["tokens"], tokens(100_000))
    today_cost = main_cost + 0.3
    summary = api.summary()
    for period, counted in yesterday_in.items():
        block = summary[period]
        expected = add(today_tokens, yesterday_tokens) if counted else today_tokens
        assert block["tokens"] == expected, period
        assert block["total_tokens"] == sum(expected.values())
        cost = today_cost + (yesterday_cost if counted else 0)
        assert block["cost_usd"] == pytest.approx(cost, abs=1e-6), period
    by_model = {row["model"]: row for row in summary["by_model"]}
    assert set(by_model) == {SONNET, f"{SONNET}-20250929", HAIKU, UNPRICED}
    assert by_model[UNPRICED]["priced"] is False
    assert by_model[UNPRICED]["cost_usd"] == 0
    assert by_model[HAIKU] == {
        "model": HAIKU,
        "tokens": tokens(0, 200_000),
        "total_tokens": 200_000,
        "cost_usd": 1.0,
        "priced": True,
    }
    sonnet_month = 0.0489 + 18.0 + 0.3 + (yesterday_cost if yesterday_in["month"] else 0)
    assert by_model[SONNET]["cost_usd"] == pytest.approx(sonnet_month, abs=1e-6)
    assert summary["unpriced_models"] == [UNPRICED]
    assert [t["task_id"] for t in summary["top_tasks"]] == [main, other]
    assert summary["top_tasks"][0]["title"] == "main"
    assert summary["top_tasks"][0]["cost_usd"] == pytest.approx(main_cost, abs=1e-6)
    assert summary["top_tasks"][0]["total_tokens"] == sum(usage["tokens"].values())

    # Daily series, oldest first, today last.
    series = api.ok(api.http.get("/api/cost/timeseries", params={"days": 7}))
    assert series["days"] == 7
    buckets = series["buckets"]
    assert [b["date"] for b in buckets] == [
        (today - timedelta(days=6 - i)).isoformat() for i in range(7)
    ]
    assert buckets[-1]["tokens"] == today_tokens
    assert buckets[-1]["cost_usd"] == pytest.approx(today_cost, abs=1e-6)
    assert buckets[-2]["tokens"] == yesterday_tokens
    assert buckets[-2]["cost_usd"] == pytest.approx(yesterday_cost)
    assert all(b["tokens"] == ZERO and b["cost_usd"] == 0 for b in buckets[:-2])
    default = api.ok(api.http.get("/api/cost/timeseries"))
    assert default["days"] == 30 and len(default["buckets"]) == 30
    single = api.ok(api.http.get("/api/cost/timeseries", params={"days": 1}))["buckets"]
    assert [b["date"] for b in single] == [today.isoformat()]
    assert len(api.ok(api.http.get("/api/cost/timeseries?days=366"))["buckets"]) == 366
    for days in ("0", "-1", "367", "400", "x", "1.5"):
        assert_error(api.http.get(f"/api/cost/timeseries?days={days}"), 400, "bad_query")


# --- events -------------------------------------------------------------------------------------


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
    api.ok(api.act(task_id, "run"))
    api.record(task_id, {"model": SONNET, "input_tokens": 3}, {"model": HAIKU, "output_tokens": 4})
    api.ok(api.patch(task_id, status="blocked"))
    assert api.http.delete(f"/api/tasks/{task_id}").status_code == 204

    events = api.events()
    assert [e["event_type"] for e in events] == [
        "task_created",
        "task_updated",
        "task_updated",
        "phase",
        "state",
        "tokens",
        "task_updated",
        "state",
        "task_deleted",
    ]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(e["type"] == "event" and e["task_id"] == task_id for e in events)
    created, renamed, _, phase, run, used, _, blocked, deleted = (e["data"] for e in events)
    assert (created["id"], created["title"], created["status"]) == (task_id, "watched", "created")
    assert renamed["title"] == "renamed" and renamed["changed"] == ["title"]
    assert (phase["name"], phase["status"], phase["iterations"]) == ("plan", "running", 1)
    assert (run["from"], run["to"], run["action"]) == ("created", "running", "run")
    assert used["recorded"] == 2 and used["tokens"] == tokens(3, 4)
    assert sorted(used["models"]) == sorted([SONNET, HAIKU])
    assert (blocked["from"], blocked["to"]) == ("running", "blocked")
    assert deleted == {"id": task_id}

    # since= returns exactly what came after, in order.
    for cut in range(len(events)):
        assert api.events(since=ids[cut]) == events[cut + 1 :]
    page = api.ok(api.http.get("/api/events", params={"since": ids[1], "limit": 2}))
    assert page["events"] == events[2:4]
    assert (page["last_id"], page["more"], page["oldest_id"]) == (ids[3], True, ids[0])
    assert api.ok(api.http.get("/api/events", params={"since": ids[-1]}))["last_id"] == ids[-1]

    other = api.create("other")["id"]
    api.ok(api.act(other, "run"))
    only_other = api.events(task_id=other)
    assert [e["event_type"] for e in only_other] == ["task_created", "state"]
    assert api.events(since=ids[-1]) == only_other

    for params in ({"since": -1}, {"since": "x"}, {"limit": 0}, {"limit": 1001}, {"task_id": "x"}):
        assert_error(api.http.get("/api/events", params=params), 400, "bad_query")


# --- metrics ------------------------------------------------------------------------------------


def _usage_batches(now: datetime) -> list[list[JSON]]:
    """Usage over several models and the last 30 hours (several hours, maybe two days)."""
    models = [SONNET, HAIKU, "claude-opus-4-5", UNPRICED]
    batches = []
    for b in range(6):
        batch = []
        for i in range(25):
            n = b * 25 + i
            batch.append(
                {
                    "model": models[n % len(models)],
                    "phase": ("plan", "implement")[n % 2],
                    "input_tokens": 1000 + n,
                    "output_tokens": 10 * n,
                    "cache_read_tokens": n % 7,
                    "cache_write_tokens": 3 * (n % 5),
                    "occurred_at": (now - timedelta(hours=n % 30, minutes=n % 60)).isoformat(),
                }
            )
        batches.append(batch)
    return batches


def _check_metrics(api: Api, sent: list[JSON], running: int) -> None:
    text = api.metrics()
    assert metric_samples(text, "orc_tasks_active") == {(): running}
    expected: dict[str, dict[str, int]] = defaultdict(lambda: dict(ZERO))
    for event in sent:
        expected[event["model"]] = add(expected[event["model"]], event_tokens(event))
    used = metric_samples(text, "orc_tokens_used_total")
    assert used == {
        (("model", model), ("type", kind)): float(counts[kind])
        for model, counts in expected.items()
        for kind in TOKEN_TYPES
    }
    cost = metric_samples(text, "orc_cost_usd_total")
    assert set(cost) == {(("model", model),) for model in expected}
    for model, counts in expected.items():
        assert cost[(("model", model),)] == pytest.approx(PRICES.cost(model, counts), rel=1e-9)
    if UNPRICED in expected:
        assert cost[(("model", UNPRICED),)] == 0


def test_metrics_equal_the_sum_of_usage_events_before_and_after_fold(api: Api, orc_env):
    ids = [api.create(f"task {i}")["id"] for i in range(4)]
    for task_id in ids[:3]:
        api.ok(api.act(task_id, "run"))
    api.ok(api.act(ids[2], "pause"))
    running = api.ok(api.http.get("/api/tasks", params={"status": "running"}))["total"]
    assert running == 2
    _check_metrics(api, [], running)

    sent: list[JSON] = []
    batches = _usage_batches(datetime.now(UTC))
    for n, batch in enumerate(batches[:4]):
        api.record(ids[n % len(ids)], *batch)
        sent += batch
    _check_metrics(api, sent, running)
    summary = api.summary()
    usage = {task_id: api.usage(task_id) for task_id in ids}

    folded = run_orc(["fold-usage"], orc_env)
    assert folded.returncode == 0, folded.stderr
    assert f"folded {len(sent)} event(s)" in folded.stdout
    _check_metrics(api, sent, running)
    assert api.summary() == summary
    assert {task_id: api.usage(task_id) for task_id in ids} == usage

    # New events after the fold: the totals plus the unfolded tail.
    for batch in batches[4:]:
        api.record(ids[3], *batch)
        sent += batch
    api.ok(api.act(ids[0], "complete"))
    _check_metrics(api, sent, running - 1)
    summary = api.summary()

    again = run_orc(["fold-usage"], orc_env)
    assert again.returncode == 0, again.stderr
    assert f"folded {sum(len(b) for b in batches[4:])} event(s)" in again.stdout
    _check_metrics(api, sent, running - 1)
    assert api.summary() == summary
    nothing = run_orc(["fold-usage"], orc_env)
    assert "folded 0 event(s)" in nothing.stdout
    _check_metrics(api, sent, running - 1)


# --- odd but well-formed input (regressions for bugs this suite found) -----------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def shared_api(request, tmp_path_factory) -> Iterator[Api]:
    """One server per database for the small checks below, which never touch each other's tasks."""
    import asyncio
    import uuid

    from tests.conftest import _admin_execute, _admin_url_for
    from tests.support import base_env

    tmp = tmp_path_factory.mktemp(f"shared-{request.param}")
    env = base_env(tmp)
    database = None
    if request.param == "postgres":
        database = f"orc_test_{uuid.uuid4().hex[:12]}"
        asyncio.run(_admin_execute(f'CREATE DATABASE "{database}"'))
        env["DATABASE_URL"] = _admin_url_for(database) + "?sslmode=disable"
    server = OrcServer(env, "--no-worker")
    try:
        client = Api(server.start())
        yield client
        client.close()
    finally:
        server.kill()
        if database is not None:
            asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def test_patch_description_null_is_a_4xx_not_a_500(shared_api: Api):
    """Regression (found by this suite): orc/api/schemas.py TaskPatch._not_empty:
    description=null is accepted and update_task writes NULL into the NOT NULL column
    task.description -> 500.
    """
    task_id = shared_api.create("null description")["id"]
    response = shared_api.patch(task_id, description=None)
    assert response.status_code != 500, response.text
    assert_error(response, 422, "validation_error")


def test_usage_with_an_occurred_at_before_year_one_in_utc_is_a_4xx(shared_api: Api):
    """Regression (found by this suite): orc/api/schemas.py UsageIn: an occurred_at whose UTC
    value falls before year 1 (0001-01-01T03:00+05:00) passes validation; converting it to UTC
    raises OverflowError -> 500.
    """
    task_id = shared_api.create("ancient usage")["id"]
    response = shared_api.http.post(
        f"/api/tasks/{task_id}/usage",
        json={"model": SONNET, "input_tokens": 1, "occurred_at": "0001-01-01T03:00:00+05:00"},
    )
    assert response.status_code != 500, response.text
    assert_error(response, 422, "validation_error")


def test_nul_characters_in_text_fields_are_a_4xx_not_a_500(shared_api: Api):
    """Regression: PostgreSQL text cannot hold U+0000, so a NUL in a title, description or
    model name was a 500 there (and stored on SQLite); now refused on both databases.
    """
    task_id = shared_api.create("nul")["id"]
    before = shared_api.task(task_id)
    for response in (
        shared_api.http.post("/api/tasks", json={"title": "a\u0000b"}),
        shared_api.patch(task_id, description="a\u0000b"),
        shared_api.http.post(
            f"/api/tasks/{task_id}/usage", json={"model": "m\u0000", "input_tokens": 1}
        ),
    ):
        assert_error(response, 422, "validation_error")
    assert shared_api.task(task_id) == before
    assert shared_api.usage(task_id)["tokens"] == ZERO


def test_a_non_canonical_task_id_means_the_same_task_everywhere(shared_api: Api):
    """Regression (found by this suite): orc/api/event_routes.py events_index (and the WebSocket
    subscribe): TASK-1 and TASK-0001 are accepted as ids of TASK-001 by the task routes, but the
    event filter compares the raw string, so ?task_id=TASK-1 silently matches nothing.
    """
    task_id = shared_api.create("aliased")["id"]
    number = int(task_id.removeprefix("TASK-"))
    alias = f"TASK-{number}"  # TASK-1 for TASK-001, TASK-0012 for TASK-012 …
    alias = alias if alias != task_id else f"TASK-0{number}"
    assert shared_api.task(alias)["id"] == task_id  # the task routes resolve the alias
    by_alias = shared_api.http.get("/api/events", params={"task_id": alias})
    if by_alias.status_code == 200:
        assert by_alias.json()["events"] == shared_api.events(task_id=task_id)
    else:
        assert_error(by_alias, 400)


def test_task_list_items_carry_their_total_tokens_and_cost(shared_api: Api):
    """The dashboard's table: each listed task's tokens and cost equal its own usage report."""
    quiet = shared_api.create("no usage yet")["id"]
    busy = shared_api.create("two models")["id"]
    shared_api.record(
        busy,
        {"model": SONNET, "phase": "plan", "input_tokens": 1200, "output_tokens": 300},
        {"model": HAIKU, "phase": "code", "input_tokens": 50, "cache_read_tokens": 7},
        {"model": UNPRICED, "phase": "code", "output_tokens": 11},
    )
    listed = {
        item["id"]: item for item in shared_api.ok(shared_api.http.get("/api/tasks"))["items"]
    }
    report = shared_api.usage(busy)
    assert listed[busy]["total_tokens"] == sum(report["tokens"].values()) == 1568
    assert listed[busy]["cost_usd"] == pytest.approx(report["cost_usd"], abs=1e-6)
    assert listed[busy]["cost_usd"] > 0
    assert (listed[quiet]["total_tokens"], listed[quiet]["cost_usd"]) == (0, 0)
    # A filtered page reads the usage of its own tasks only and still gets them right.
    created = shared_api.ok(shared_api.http.get("/api/tasks", params={"status": "created"}))
    assert {i["id"]: i["total_tokens"] for i in created["items"]}[busy] == 1568
