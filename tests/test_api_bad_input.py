"""Bad input to the task and usage routes: a 4xx with the JSON error shape, and nothing written."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.api_client import (
    MIB,
    SONNET,
    ZERO,
    Api,
    add,
    assert_error,
    tokens,
)


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


def test_usage_with_an_occurred_at_before_year_one_in_utc_is_a_4xx(api: Api):
    """Regression (found by this suite): orc/api/schemas.py UsageIn: an occurred_at whose UTC
    value falls before year 1 (0001-01-01T03:00+05:00) passes validation; converting it to UTC
    raises OverflowError -> 500.
    """
    task_id = api.create("ancient usage")["id"]
    response = api.http.post(
        f"/api/tasks/{task_id}/usage",
        json={"model": SONNET, "input_tokens": 1, "occurred_at": "0001-01-01T03:00:00+05:00"},
    )
    assert response.status_code != 500, response.text
    assert_error(response, 422, "validation_error")


def test_nul_characters_in_text_fields_are_a_4xx_not_a_500(api: Api):
    """Regression: PostgreSQL text cannot hold U+0000, so a NUL in a title, description or
    model name was a 500 there (and stored on SQLite); now refused on both databases.
    """
    task_id = api.create("nul")["id"]
    before = api.task(task_id)
    for response in (
        api.http.post("/api/tasks", json={"title": "a\u0000b"}),
        api.patch(task_id, description="a\u0000b"),
        api.http.post(f"/api/tasks/{task_id}/usage", json={"model": "m\u0000", "input_tokens": 1}),
    ):
        assert_error(response, 422, "validation_error")
    assert api.task(task_id) == before
    assert api.usage(task_id)["tokens"] == ZERO


def test_a_body_over_one_mib_is_413_json_and_writes_nothing(server_factory, migrated, sqlite_env):
    """The size limit is the HTTP server's (Sanic's protocol), so this one needs a real server."""
    server = server_factory(sqlite_env, "--no-worker").start()
    with httpx.Client(base_url=server.base_url, timeout=15) as http:
        created = http.post("/api/tasks", json={"title": "target"})
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        too_big = [
            ("/api/tasks", {"title": "x", "description": "d" * (MIB + 16)}),
            (f"/api/tasks/{task_id}/usage", {"model": SONNET, "phase": "p" * (MIB + 16)}),
        ]
        for path, body in too_big:
            assert_error(http.post(path, json=body), 413)
        assert http.get("/api/tasks").json()["total"] == 1
        assert http.get(f"/api/tasks/{task_id}/usage").json()["tokens"] == ZERO
