"""GET /api/metrics: business figures equal the sum of the usage events, before and after a fold."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from orc.usage.pricing import TOKEN_TYPES
from tests.api_client import (
    HAIKU,
    JSON,
    PRICES,
    SONNET,
    UNPRICED,
    ZERO,
    Api,
    add,
    event_tokens,
    metric_samples,
)
from tests.support import run_orc


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
        api.start(task_id)
    api.ok(api.patch(ids[2], status="blocked"))
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
