"""Phases by weight, their prompts (shipped and overridden), and how a phase's end is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from orc.runs.outcome import parse_outcome
from orc.runs.phases import (
    ALL_PHASES,
    PhaseContext,
    PromptError,
    phase_prompt,
    phases_for,
    resume_prompt,
)

CONTEXT = PhaseContext(
    task_id="TASK-007",
    title="Add a --json flag",
    description="`orc list --json` prints JSON; cost $5 max.",
    base_commit="abc123",
    artifacts={"spec": "SPEC: print JSON"},
    review_findings="- cli.py: handle an empty list",
)


def test_each_weight_runs_upstreams_phase_set():
    assert phases_for("trivial") == ("implement",)
    assert phases_for("small") == ("spec", "implement", "review")
    assert phases_for("medium") == ("spec", "tests", "implement", "review", "docs")
    assert phases_for("large") == ("spec", "breakdown", "tests", "implement", "review", "docs")


@pytest.mark.parametrize("phase", ALL_PHASES)
def test_every_shipped_prompt_names_the_task_and_ends_with_the_completion_protocol(phase):
    prompt = phase_prompt(phase, CONTEXT, project=None)
    assert "TASK-007" in prompt and "Add a --json flag" in prompt
    assert "cost $5 max" in prompt  # a dollar sign in the task is text, not a placeholder
    assert prompt.rstrip().endswith("Nothing may follow the JSON object.")
    assert '{"status": "complete"' in prompt and '{"status": "blocked"' in prompt
    assert "$" not in prompt.replace("$5", "")  # every placeholder was filled


def test_later_phases_get_the_spec_and_implement_gets_the_review_findings():
    implement = phase_prompt("implement", CONTEXT, project=None)
    assert "SPEC: print JSON" in implement and "cli.py: handle an empty list" in implement
    trivial = PhaseContext("TASK-1", "t", "", "abc")
    assert "(no spec phase for this task)" in phase_prompt("implement", trivial, None)
    assert "git diff abc123" in phase_prompt("review", CONTEXT, project=None)


def test_a_project_overrides_a_phase_prompt_and_still_gets_the_protocol(tmp_path: Path):
    prompts = tmp_path / ".orc" / "prompts"
    prompts.mkdir(parents=True)
    (prompts / "implement.md").write_text("Our house rules. Do $title for $task_id.")
    prompt = phase_prompt("implement", CONTEXT, project=tmp_path)
    assert prompt.startswith("Our house rules. Do Add a --json flag for TASK-007.")
    assert prompt.rstrip().endswith("Nothing may follow the JSON object.")
    assert "SPEC" not in prompt
    assert "Read the code" in phase_prompt("spec", CONTEXT, project=tmp_path)  # not overridden

    (prompts / "review.md").write_bytes(b"\xff\xfe bad")
    with pytest.raises(PromptError, match="not UTF-8"):
        phase_prompt("review", CONTEXT, project=tmp_path)


def test_a_resume_prompt_carries_the_persons_note():
    text = resume_prompt("implement", "TASK-007", "Use the v2 API; the token is in $VAULT.")
    assert "Use the v2 API; the token is in $VAULT." in text and "TASK-007" in text


@pytest.mark.parametrize(
    ("message", "status", "summary", "body"),
    [
        (
            'Done.\n{"status": "complete", "summary": "added the flag"}',
            "complete",
            "added the flag",
            "Done.",
        ),
        (
            '# Spec\n\nText.\n\n```json\n{"status": "complete", "summary": "s"}\n```\n',
            "complete",
            "s",
            "# Spec\n\nText.",
        ),
        (
            'I need help.\n{"status": "blocked", "summary": "Which API version?"}  ',
            "blocked",
            "Which API version?",
            "I need help.",
        ),
        ('{"status": "complete", "summary": "x", "meta": {"files": 2}}', "complete", "x", ""),
    ],
)
def test_a_phase_ends_with_its_json_object(message, status, summary, body):
    outcome = parse_outcome(message)
    assert outcome is not None
    assert (outcome.status, outcome.summary, outcome.body) == (status, summary, body)


@pytest.mark.parametrize(
    "message",
    [
        "Still working on it.",
        '{"status": "complete", "summary": "x"}\nOne more thing to check.',
        '{"status": "done", "summary": "x"}',
        '["status", "complete"]',
        '{"status": "complete", "summary": "x"',
        "",
    ],
)
def test_anything_else_means_the_phase_goes_on(message):
    assert parse_outcome(message) is None


def test_review_findings_are_read_as_a_list():
    outcome = parse_outcome(
        'Review.\n{"status": "complete", "summary": "2 problems", '
        '"findings": ["a.py: off by one", " ", "b.py: no test"]}'
    )
    assert outcome is not None and outcome.findings == ("a.py: off by one", "b.py: no test")
    clean = parse_outcome('{"status": "complete", "summary": "ok", "findings": []}')
    assert clean is not None and clean.findings == ()
