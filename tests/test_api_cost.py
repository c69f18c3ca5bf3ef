"""GET /api/cost/summary and /api/cost/timeseries: spend per period, model, task and day (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.api_client import (
    HAIKU,
    MAIN_COST,
    SONNET,
    UNPRICED,
    ZERO,
    Api,
    add,
    assert_error,
    record_mixed_usage,
    tokens,
)


def test_the_summary_counts_today_this_week_and_this_month_by_model_and_top_tasks(api: Api):
    main, other = record_mixed_usage(api)
    usage = api.usage(main)
    main_cost = MAIN_COST
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


def test_the_daily_series_lists_each_day_oldest_first_with_its_tokens_and_cost(api: Api):
    main, _ = record_mixed_usage(api)
    today = datetime.now(UTC).date()
    yesterday_tokens = tokens(0, 1_000)
    yesterday_cost = 1_000 * 15 / 1_000_000
    today_tokens = add(api.usage(main)["tokens"], tokens(100_000))
    today_cost = MAIN_COST + 0.3
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
