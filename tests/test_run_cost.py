"""What a run cost, everywhere a user looks: a run on a model orc's price list does not know
costs what the agent reported, in the task list, the task's phases, `orc show`, `orc cost`, the
cost summary and the metrics.

orc serve, its worker and the Claude Code CLI are real; Anthropic's API is the fake of
tests/fake_anthropic.py (it answers as whichever model it is asked for).
"""

from __future__ import annotations

import re

import pytest

from tests.fake_anthropic import Usage, text
from tests.support import run_orc
from tests.test_runs_cli import DONE, agent_env

UNKNOWN_MODEL = "acme-coder-1"


def test_a_run_on_a_model_without_a_price_costs_what_the_agent_reported(
    migrated, orc_env, fake, repo, server_factory
):
    env = {**agent_env(orc_env, fake), "ORC_AGENT_MODEL": UNKNOWN_MODEL}
    assert run_orc(["init"], env, cwd=repo).returncode == 0
    server = server_factory(env).start()
    assert run_orc(["new", "Say hi", "--weight", "trivial"], env, cwd=repo).returncode == 0
    fake.script([text("Hi.\n" + DONE % "said hi", usage=Usage(1000, 2000, 300, 400))])

    run = run_orc(["run", "TASK-001", "--follow"], env, cwd=repo, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert {r.body["model"] for r in fake.message_requests} == {UNKNOWN_MODEL}

    # The agent's own figure for the run (Claude Code's total_cost_usd).
    status = server.get("/api/tasks/TASK-001/runs/latest").json()
    reported = status["cost_usd"]
    assert reported > 0

    [phase] = status["phases"]
    assert (phase["name"], phase["status"], phase["iterations"]) == ("implement", "completed", 1)
    assert phase["total_tokens"] == 1000 + 2000 + 300 + 400
    assert phase["cost_usd"] == pytest.approx(reported)
    assert phase["duration_seconds"] >= 0
    assert status["branch"] == "orc/TASK-001" and status["fetch_hint"] is None
    detail = server.get("/api/tasks/TASK-001").json()
    assert detail["phases"][0]["cost_usd"] == pytest.approx(reported)

    [listed] = server.get("/api/tasks").json()["items"]
    assert listed["cost_usd"] == pytest.approx(reported)
    usage = server.get("/api/tasks/TASK-001/usage").json()
    assert (usage["cost_usd"], usage["unpriced_models"]) == (
        pytest.approx(reported),
        [UNKNOWN_MODEL],
    )

    summary = server.get("/api/cost/summary").json()
    assert summary["today"]["cost_usd"] == pytest.approx(reported)
    [model] = summary["by_model"]
    assert (model["model"], model["priced"]) == (UNKNOWN_MODEL, False)
    assert model["cost_usd"] == pytest.approx(reported)
    metrics = server.get("/api/metrics").text
    found = re.search(rf'orc_cost_usd_total{{model="{UNKNOWN_MODEL}"}} (\S+)', metrics)
    assert found and float(found.group(1)) == pytest.approx(reported)

    money = f"${reported:,.4f}"
    cost = run_orc(["cost"], env)
    assert cost.returncode == 0, cost.stderr
    assert f"{UNKNOWN_MODEL} (unpriced)" in cost.stdout and money in cost.stdout
    show = run_orc(["show", "TASK-001"], env)
    assert show.returncode == 0, show.stderr
    assert "branch: orc/TASK-001" in show.stdout and "fetch it" not in show.stdout
    row = next(line for line in show.stdout.splitlines() if line.strip().startswith("implement"))
    assert "completed" in row and "3,700" in row and money in row
