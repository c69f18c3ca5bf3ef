"""A run seen in the dashboard (real chromium): started with its button, the transcript live,
the branch's diff. orc serve, its worker and the Claude Code CLI are real; the Anthropic API is
the fake of tests/fake_anthropic.py."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from tests.browser import open_page, screenshot
from tests.fake_anthropic import CWD, text, tool_calls, write
from tests.support import run_orc
from tests.test_runs_cli import DONE, agent_env


@pytest.mark.slow
def test_a_run_started_from_the_page_shows_its_transcript_live_and_its_diff(
    chromium: Browser,
    migrated,
    sqlite_env,
    fake,
    repo,
    server_factory,
):
    env = agent_env(sqlite_env, fake)
    assert run_orc(["init"], env, cwd=repo).returncode == 0
    server = server_factory(env).start()
    assert run_orc(["new", "Greet", "--weight", "trivial"], env, cwd=repo).returncode == 0
    fake.script(
        [
            tool_calls(write(CWD + "/greet.py", "print('hi')\n")),
            text("Wrote greet.py.\n" + DONE % "added greet.py"),
        ]
    )
    _, page, _ = open_page(chromium)
    page.goto(server.base_url + "/#/tasks/TASK-001")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator("#task-facts")).to_contain_text("shop")

    page.get_by_role("button", name="Run").click()
    transcript = page.locator("#transcript")
    expect(transcript).to_contain_text("» implement #1")
    expect(transcript).to_contain_text("⚙ Write")
    expect(transcript).to_contain_text("Wrote greet.py.")
    expect(page.locator("#task-status")).to_have_text("completed", timeout=30_000)
    expect(page.locator("#task-facts")).to_contain_text("orc/TASK-001")
    # The phases table, filled in by the run: what the phase took and spent.
    row = page.locator('#phases-body tr[data-phase="implement"]')
    expect(row.locator(".status")).to_have_text("completed")
    expect(row.locator(".iterations")).to_have_text("1")
    expect(row.locator(".duration")).to_have_text(re.compile(r"^\d.* s$"))
    expect(row.locator(".tokens")).to_have_text(re.compile(r"^[1-9][\d,]*$"))
    expect(row.locator(".cost")).to_have_text(re.compile(r"^\$0\.\d{3}[1-9]$"))
    expect(page.locator("#fetch-hint")).to_be_hidden()  # the branch is in the project itself
    # Only an admin (here: the local owner) may override an outcome; no run to cancel now.
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)

    page.locator("#diff-box summary").click()
    expect(page.locator("#diff-stat")).to_contain_text("greet.py")
    expect(page.locator("#diff-patch")).to_contain_text("+print('hi')")
    screenshot(page, "task-run-1280")
