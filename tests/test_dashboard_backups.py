"""The System page's backup panel in a real browser, with a real job worker taking the backup."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.browser import open_page, screenshot
from tests.support import base_env, free_port, run_orc

SERVER_TOKEN = "dashboard-backup-token-G8DExyAxnpdfhA0CoErKc2vmucpSu4QA"
WORKER_MS = 30_000  # the worker picks queued jobs up within a second; slack for a loaded CI


@pytest.mark.timeout(180)
def test_an_admin_backs_up_from_the_page_and_a_viewer_cannot(
    chromium: Browser, server_factory, tmp_path: Path
):
    port = free_port()
    env = base_env(tmp_path)
    env.update(ORC_AUTH_TOKEN=SERVER_TOKEN, ORC_BASE_URL=f"http://127.0.0.1:{port}")
    server = server_factory(env, port=port).start()  # with its job worker
    assert run_orc(["new", "Something worth keeping"], env).returncode == 0

    _, page, guard = open_page(chromium)
    page.goto(server.base_url + "/#/system")
    page.get_by_label("Access token or server token").fill(SERVER_TOKEN)
    page.keyboard.press("Enter")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    page.goto(server.base_url + "/#/system")
    button = page.get_by_role("button", name="Back up now")
    expect(button).to_be_visible()
    expect(page.locator('#checks-body tr[data-check="backup"]')).to_be_visible()

    button.click()
    result = page.locator("#backup-result")
    expect(result).to_contain_text(re.compile("Queued|done"))
    # The worker's "backup" event refreshes the panel: the manual backup shows up by itself.
    manual_row = page.locator("#backup-rows tr", has_text="manual")
    expect(manual_row).to_be_visible(timeout=WORKER_MS)
    expect(result).to_contain_text("done")
    listing = httpx.get(
        server.base_url + "/api/backups",
        headers={"Authorization": f"Bearer {SERVER_TOKEN}"},
        timeout=10,
    ).json()
    manual = [b for b in listing["backups"] if b["reason"] == "manual"]
    assert len(manual) == 1
    expect(manual_row).to_have_attribute("data-backup", manual[0]["name"])
    expect(page.locator("#backup-facts")).to_contain_text("Size of the last backup")
    assert guard.blocked == []
    screenshot(page, "system-backup-1280")

    # A viewer sees the status but not the button or the list; the server refuses it anyway.
    viewer = run_orc(["token", "create", "--name", "v", "--role", "viewer"], env).stdout.strip()
    _, viewer_page, _ = open_page(chromium)
    viewer_page.goto(server.base_url + "/#/system")
    viewer_page.get_by_label("Access token or server token").fill(viewer)
    viewer_page.keyboard.press("Enter")
    expect(viewer_page.locator("#user-role")).to_have_text("viewer")
    viewer_page.goto(server.base_url + "/#/system")
    expect(viewer_page.locator('#checks-body tr[data-check="backup"]')).to_be_visible()
    expect(viewer_page.get_by_role("button", name="Back up now")).to_be_hidden()
    expect(viewer_page.locator("#backup-list")).to_be_hidden()
    refused = viewer_page.evaluate(
        """async () => (await fetch("/api/backups", {method: "POST"})).status"""
    )
    assert refused == 403
