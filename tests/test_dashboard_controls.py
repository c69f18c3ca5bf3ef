"""Run controls in the dashboard by role, and the task list live, in real chromium over real runs.

orc serve, its job worker, git and the Claude Code CLI are real; Anthropic's API is the fake of
tests/fake_anthropic.py. The agent's turns wait on files the test creates (a real Bash tool
call polling for them), so the test decides when a turn ends: no race it does not control.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import open_page, screenshot
from tests.fake_anthropic import bash, text, tool_calls
from tests.support import OrcServer, free_port, run_orc
from tests.test_runs_cli import DONE, agent_env

SERVER_TOKEN = "dashboard-controls-token-0123456789-abcdefghij"
RUN_MS = 60_000  # a run's start includes the CLI's own start-up on a loaded machine


def gate(path: Path) -> str:
    """A shell command that returns once ``path`` exists (the test opens the gate)."""
    return f"while [ ! -e {path} ]; do sleep 0.1; done; echo gate open"


def sign_in(chromium: Browser, server: OrcServer, token: str, hash_: str) -> Page:
    _, page, _ = open_page(chromium)
    page.goto(server.base_url + "/" + hash_)
    page.get_by_label("Access token or server token").fill(token)
    page.keyboard.press("Enter")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    return page


def make_token(env: dict[str, str], email: str, role: str) -> str:
    assert run_orc(["user", "add", email, "--role", role], env).returncode == 0
    made = run_orc(["token", "create", "--name", role, "--role", role, "--user", email], env)
    assert made.returncode == 0, made.stderr
    [secret] = re.findall(r"^orc_pat_\S+$", made.stdout, re.MULTILINE)
    return secret


def status_cell(page: Page, task_id: str):
    return page.locator(f'#tasks-body tr[data-task-id="{task_id}"] .status')


def buttons(page: Page) -> list[str]:
    return page.locator("#task-actions button").all_inner_texts()


@pytest.mark.timeout(300)  # three real runs and three browser sessions on a loaded machine
def test_run_pause_resume_and_cancel_by_role_with_the_task_list_live(
    chromium: Browser, migrated, sqlite_env, fake, repo, server_factory, tmp_path
):
    port = free_port()
    env = {
        **agent_env(sqlite_env, fake),
        "ORC_AUTH_TOKEN": SERVER_TOKEN,
        "ORC_BASE_URL": f"http://127.0.0.1:{port}",
        "ORC_MAX_CONCURRENT_RUNS": "1",  # so a second run stays queued while the first runs
    }
    assert run_orc(["init"], env, cwd=repo).returncode == 0
    viewer = make_token(env, "vic@example.com", "viewer")
    member = make_token(env, "mo@example.com", "member")
    server = server_factory(env, port=port).start()
    as_member = {"Authorization": f"Bearer {member}"}
    for title in ("Slow one", "Quick one"):
        made = httpx.post(
            server.base_url + "/api/tasks",
            json={"title": title, "weight": "trivial"},
            headers=as_member,
            timeout=10,
        )
        assert made.status_code == 201, made.text
    worktrees = Path(env["ORC_HOME"]) / "worktrees" / "shop"
    gates = tmp_path / "gates"
    gates.mkdir()
    fake.script(
        [
            tool_calls(bash(gate(gates / "first"))),
            text("Half way there."),  # the turn ends: the pause takes effect
            tool_calls(bash(gate(gates / "second"))),  # resumed, then cancelled mid-turn
        ],
        workdir=str(worktrees / "TASK-001"),
    )
    fake.script([text("Quick.\n" + DONE % "quick")], workdir=str(worktrees / "TASK-002"))

    # A viewer watches the list; it sees every change without reloading.
    watcher = sign_in(chromium, server, viewer, "#/tasks")
    expect(status_cell(watcher, "TASK-001")).to_have_text("created")

    # The member who made TASK-001 runs it from its page.
    page = sign_in(chromium, server, member, "#/tasks/TASK-001")
    expect(page.locator("#task-status")).to_have_text("created")
    assert "Complete" not in buttons(page) and "Fail" not in buttons(page)
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#task-status")).to_have_text("running", timeout=RUN_MS)
    expect(page.locator("#transcript")).to_contain_text("⚙ Bash", timeout=RUN_MS)
    expect(status_cell(watcher, "TASK-001")).to_have_text("running")
    expect(page.locator('#phases-body tr[data-phase="implement"]')).to_contain_text("running")
    expect(page.locator('#phases-body tr[data-phase="implement"] .iterations')).to_have_text("1")

    # The other task waits for the only slot: queued, live in the list.
    queued = httpx.post(server.base_url + "/api/tasks/TASK-002/run", headers=as_member, timeout=10)
    assert queued.status_code == 202, queued.text
    expect(status_cell(watcher, "TASK-002")).to_have_text("queued")

    # Pause waits for the agent's turn to end; the test ends it by opening the gate.
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    assert "Complete" not in buttons(page) and "Fail" not in buttons(page)
    with page.expect_response(lambda r: r.url.endswith("/pause")) as paused:
        page.get_by_role("button", name="Pause").click()
    assert paused.value.status == 202
    (gates / "first").touch()
    expect(page.locator("#task-status")).to_have_text("paused", timeout=RUN_MS)
    expect(page.locator("#transcript")).to_contain_text("Half way there.")
    expect(page.locator('#phases-body tr[data-phase="implement"] .status')).to_have_text("paused")
    expect(status_cell(watcher, "TASK-001")).to_have_text("paused")
    # The slot is free: the queued task runs to the end, live in the list.
    expect(status_cell(watcher, "TASK-002")).to_have_text("completed", timeout=RUN_MS)

    # Only an admin may overrule the outcome: the member has no complete/fail, the admin has.
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    assert "Complete" not in buttons(page) and "Fail" not in buttons(page)
    admin = sign_in(chromium, server, SERVER_TOKEN, "#/tasks/TASK-001")
    expect(admin.locator("#task-status")).to_have_text("paused")
    expect(admin.get_by_role("button", name="Complete")).to_be_visible()
    expect(admin.get_by_role("button", name="Fail")).to_be_visible()
    admin.context.close()

    # A viewer sees the task and its run, and no control at all.
    watcher.locator('a[href="#/tasks/TASK-001"]').click()
    expect(watcher.locator("#task-status")).to_have_text("paused")
    expect(watcher.locator("#transcript")).to_contain_text("Half way there.")
    expect(watcher.locator("#task-actions")).to_be_hidden()
    assert watcher.locator("#task-actions button").count() == 0

    # Resume: the same session goes on; cancel ends it mid-turn.
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#task-status")).to_have_text("running", timeout=RUN_MS)
    expect(page.locator("#transcript").locator("li", has_text="⚙ Bash")).to_have_count(
        2, timeout=RUN_MS
    )
    expect(watcher.locator("#task-status")).to_have_text("running")
    expect(page.locator('#phases-body tr[data-phase="implement"] .iterations')).to_have_text("2")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#task-status")).to_have_text("failed", timeout=RUN_MS)
    expect(page.locator("#task-reason")).to_have_text("cancelled")
    expect(watcher.locator("#task-status")).to_have_text("failed")
    # The phase stopped with the run: not left "running" with nothing running.
    expect(page.locator('#phases-body tr[data-phase="implement"] .status')).to_have_text("failed")
    screenshot(page, "task-cancelled-member-1280")
    watcher.goto(server.base_url + "/#/tasks")
    expect(status_cell(watcher, "TASK-001")).to_have_text("failed")
    screenshot(watcher, "tasks-viewer-1280")


@pytest.fixture
def read_only_repo(repo: Path, tmp_path: Path) -> Iterator[Path]:
    """The repository mounted read-only, as the container mounts /projects."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root (CI runs as root)")
    mount = tmp_path / "ro" / "shop"
    mount.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(repo), str(mount)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mount)], check=True)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_read_only_projects_task_page_says_where_to_fetch_its_branch(
    chromium: Browser, migrated, sqlite_env, fake, repo, read_only_repo, server_factory
):
    env = agent_env(sqlite_env, fake)
    assert run_orc(["project", "add", str(read_only_repo)], env).returncode == 0
    server = server_factory(env).start()
    assert run_orc(["new", "Greet", "--weight", "trivial"], env).returncode == 0
    fake.script([text("Nothing to change.\n" + DONE % "looked")])
    run = run_orc(["run", "TASK-001", "--follow"], env, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr

    clone = Path(env["ORC_HOME"]) / "clones" / "shop"
    hint = f"git fetch {clone} orc/TASK-001:orc/TASK-001"
    assert server.get("/api/tasks/TASK-001/runs/latest").json()["fetch_hint"] == hint
    assert server.get("/api/tasks/TASK-001/diff").json()["fetch_hint"] == hint
    assert hint in run_orc(["diff", "TASK-001"], env).stderr
    assert f"fetch it: {hint}" in run_orc(["show", "TASK-001"], env).stdout
    # What the user then does, in their own checkout.
    subprocess.run(["git", "-C", str(repo), *hint.split()[1:]], check=True)

    _, page, _ = open_page(chromium)
    page.goto(server.base_url + "/#/tasks/TASK-001")
    expect(page.locator("#task-status")).to_have_text("completed")
    expect(page.locator("#fetch-hint")).to_be_visible()
    expect(page.locator("#fetch-hint-command")).to_have_text(hint)
    row = page.locator('#phases-body tr[data-phase="implement"]')
    expect(row).to_contain_text("completed")
    expect(row.locator(".iterations")).to_have_text("1")
    expect(row.locator(".tokens")).not_to_have_text("0")
    expect(row.locator(".cost")).not_to_have_text("$0.0000")
