"""POST and GET /api/tasks/ID/usage: totals by phase and model, each priced per model."""

from __future__ import annotations

import pytest

from tests.api_client import (
    HAIKU,
    MAIN_COST,
    PLAN_COST,
    SONNET,
    UNPRICED,
    Api,
    record_mixed_usage,
    tokens,
)


def test_usage_is_totalled_by_phase_and_model_and_priced_per_model(api: Api):
    main, other = record_mixed_usage(api)
    usage = api.usage(main)
    assert pytest.approx(0.0489) == PLAN_COST  # the prices of claude-sonnet-4-5, see api_client
    rows = {(r["phase"], r["model"]): r for r in usage["by_phase_and_model"]}
    assert list(rows) == [
        ("implement", UNPRICED),
        ("implement", HAIKU),
        ("implement", SONNET),
        ("implement", f"{SONNET}-20250929"),
        ("plan", SONNET),  # the phase defaults to the task's current phase
    ]
    assert rows["plan", SONNET]["tokens"] == tokens(1000, 2000, 3000, 4000)
    assert rows["plan", SONNET]["cost_usd"] == pytest.approx(PLAN_COST, abs=1e-6)
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
    assert usage["cost_usd"] == pytest.approx(MAIN_COST, abs=1e-6)
    assert usage["task_id"] == main
    assert api.usage(other)["tokens"] == tokens(100_000, 1_000)
