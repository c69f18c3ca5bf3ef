"""A task's phases as its page shows them (status, iterations, duration, tokens, cost), and a
phase that stops with its run, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orc.db.models import Run, Task, TaskPhase
from orc.runs import phase_records
from orc.runs.claims import claim_next_run, end_run
from orc.runs.views import task_phases
from orc.usage.pricing import DEFAULT_PRICES, PriceList
from orc.usage.recording import UsageRecord, record_usage

PRICES = PriceList(dict(DEFAULT_PRICES))


async def running_phase(name: str = "implement") -> tuple[int, object]:
    """A task whose run a worker holds, in its first phase's second iteration."""
    task = await Task.create(title="Phases", weight="small", status="queued")
    await Run.create(task=task, status="queued", queued_at=datetime.now(UTC))
    claim = await claim_next_run("worker-1", max_running=2)
    assert claim is not None
    await phase_records.start_phase(task.number, claim.run_id, name, None)
    await phase_records.count_iteration(task.number, claim.run_id, name, 2)
    return task.number, claim


async def test_each_phase_shows_its_iterations_duration_tokens_and_cost(store):
    number, _ = await running_phase("spec")
    now = datetime.now(UTC)
    await record_usage(
        number,
        [
            UsageRecord("claude-opus-5-5", "spec", now, input_tokens=1000, output_tokens=100),
            UsageRecord("acme-llm-1", "spec", now, input_tokens=5, reported_cost_usd=0.5),
            UsageRecord("claude-opus-5-5", "review", now, input_tokens=7),
        ],
    )
    [spec] = await task_phases(number, PRICES)
    assert (spec.name, spec.status, spec.iterations) == ("spec", "running", 2)
    assert spec.total_tokens == 1105
    assert spec.cost_usd == pytest.approx((1000 * 4 + 100 * 20) / 1e6 + 0.5)
    assert spec.duration_seconds is not None and spec.duration_seconds >= 0  # so far

    await phase_records.finish_phase(number, "spec", "completed", "wrote it", "the spec", "abc123")
    [spec] = await task_phases(number, PRICES)
    assert (spec.status, spec.summary, spec.commit) == ("completed", "wrote it", "abc123")
    phase = await TaskPhase.get(task_id=number, name="spec")
    assert spec.duration_seconds == pytest.approx(
        (phase.finished_at - phase.started_at).total_seconds(), abs=0.1
    )
    assert spec.to_json()["cost_usd"] == pytest.approx(spec.cost_usd)


@pytest.mark.parametrize(("ending", "phase_status"), [("paused", "paused"), ("failed", "failed")])
async def test_a_phase_stops_with_its_run(store, ending, phase_status):
    number, claim = await running_phase()
    await end_run(claim, ending, "why")  # type: ignore[arg-type]
    [phase] = await task_phases(number, PRICES)
    assert phase.status == phase_status and phase.duration_seconds is not None
    # Never completed: a resumed run runs the phase again (and its duration starts over).
    assert "implement" not in await phase_records.completed_phases(number)
