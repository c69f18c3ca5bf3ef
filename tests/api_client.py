"""The task API as the tests call it: an `Api` client over an in-process app, and shared checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from orc.usage.pricing import DEFAULT_PRICES, TOKEN_TYPES, PriceList
from tests.in_process import LiveApp

JSON = dict[str, Any]
PRICES = PriceList(dict(DEFAULT_PRICES))
SONNET = "claude-sonnet-4-5"
HAIKU = "claude-haiku-4-5"
UNPRICED = "acme-llm-1"
ZERO = dict.fromkeys(TOKEN_TYPES, 0)
MIB = 1024 * 1024


class Api:
    """An HTTP client for one orc app, with the calls these tests repeat."""

    def __init__(self, live: LiveApp) -> None:
        self.live = live
        self.http = live.http
        self.claims: dict[str, Any] = {}  # task id -> the claim `start` made

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

    def start(self, task_id: str) -> JSON:
        """Queue a run and let a worker claim it, as the job worker would: the task is running
        (no agent starts: these tests are about the API)."""
        from orc.runs.claims import claim_next_run

        queued = self.ok(self.act(task_id, "run"), 202)
        assert queued["status"] == "queued", queued
        number = int(task_id.removeprefix("TASK-"))
        while True:  # runs are claimed oldest first: older queued ones are taken on the way
            claim = self.live.run(claim_next_run("test-worker:1", max_running=1000))
            assert claim is not None, f"{task_id}'s run was not claimable"
            if claim.task_number == number:
                break
        self.claims[task_id] = claim
        return self.task(task_id)

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


# $3 per million input, $15 output, $0.30 cache read, $3.75 cache write (claude-sonnet-4-5).
PLAN_COST = (1000 * 3 + 2000 * 15 + 3000 * 0.30 + 4000 * 3.75) / 1_000_000
# The plan phase, 1M in + 1M out of sonnet, 500k in of dated sonnet, 200k out of haiku.
MAIN_COST = PLAN_COST + 18.0 + 1.5 + 1.0


def record_mixed_usage(api: Api) -> tuple[str, str]:
    """Two tasks' usage: several phases and models (one dated, one unpriced), one event yesterday.

    Returns the ids of the busy task ("main", its usage costs MAIN_COST) and the other one.
    """
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

    return main, other
