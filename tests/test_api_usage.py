"""POST and GET /api/tasks/ID/usage, /api/cost/*: totals by phase and model, priced per model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.api_client import (
    HAIKU,
    SONNET,
    UNPRICED,
    ZERO,
    Api,
    add,
    assert_error,
    tokens,
)


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
