"""The dashboard in a real browser (Debian chromium) against a real `orc serve`, auth off."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from orc.usage.pricing import DEFAULT_PRICES, PriceList
from tests.browser import DESKTOP, PHONE, money, open_page, screenshot
from tests.support import OrcServer, run_orc

SONNET = "claude-sonnet-4-5"
HAIKU = "claude-haiku-4-5"
PRICES = PriceList(dict(DEFAULT_PRICES))
ASSET_BUDGET_BYTES = 500_000
FIRST_PAINT_BUDGET_MS = 1000


def with_project(env: dict[str, str], repo: Path) -> None:
    """Register ``repo``: tasks made afterwards belong to it and can be queued to run."""
    added = run_orc(["project", "add", str(repo)], env)
    assert added.returncode == 0, added.stderr


@pytest.fixture
def orc(server_factory, migrated, sqlite_env, repo) -> OrcServer:
    with_project(sqlite_env, repo)
    return server_factory(sqlite_env, "--no-worker").start()


def open_live(chromium: Browser, server: OrcServer, path: str = "/", **viewport: int) -> Page:
    """The dashboard, connected to the live stream."""
    _, page, _ = open_page(chromium, **viewport)
    page.goto(server.base_url + path)
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    # Marks this document: a reload would start a fresh window without it.
    page.evaluate("window.sameDocument = true")
    return page


def row(page: Page, task_id: str):
    return page.locator(f'#tasks-body tr[data-task-id="{task_id}"]')


def still_same_document(page: Page) -> bool:
    return bool(page.evaluate("window.sameDocument === true"))


def test_tasks_from_other_processes_their_status_and_tokens_appear_without_reload(
    chromium: Browser, orc: OrcServer
):
    page = open_live(chromium, orc)
    expect(page.locator("#tasks-empty")).to_be_visible()

    # `orc new` writes to the store from another process; the page hears it over the WebSocket.
    made = run_orc(["new", "Written by another process", "--weight", "large"], orc.env)
    assert made.returncode == 0, made.stderr
    task = row(page, "TASK-001")
    expect(task.locator(".title")).to_have_text("Written by another process")
    expect(task.locator(".weight")).to_have_text("large")
    expect(task.locator(".status")).to_have_text("created")

    # No job worker here: the run waits in the queue.
    assert httpx.post(f"{orc.base_url}/api/tasks/TASK-001/run").status_code == 202
    expect(task.locator(".status")).to_have_text("queued")
    phase = httpx.patch(f"{orc.base_url}/api/tasks/TASK-001", json={"current_phase": "plan"})
    assert phase.status_code == 200, phase.text
    expect(task.locator(".phase")).to_have_text("plan")

    usage = {"model": SONNET, "phase": "plan", "input_tokens": 12000, "output_tokens": 3456}
    assert httpx.post(f"{orc.base_url}/api/tasks/TASK-001/usage", json=usage).status_code == 201
    expect(task.locator(".tokens")).to_have_text("15,456")
    listed = orc.get("/api/tasks").json()["items"][0]
    assert listed["cost_usd"] > 0
    expect(task.locator(".cost")).to_have_text(money(listed["cost_usd"]))
    expect(page.locator("#today")).to_contain_text("1 queued")
    assert still_same_document(page)
    screenshot(page, "tasks-1280")

    # The task's page: phases, usage by phase and model, cost; it follows new usage live too.
    task.locator("a").click()
    expect(page.locator("#task-title")).to_have_text("TASK-001 · Written by another process")
    expect(page.locator("#task-status")).to_have_text("queued")
    expect(page.locator("#phases-body tr").first).to_contain_text("plan")
    usage_rows = page.locator("#usage-body tr")
    expect(usage_rows).to_have_count(1)
    expect(usage_rows.first).to_contain_text("plan")
    expect(usage_rows.first).to_contain_text(SONNET)
    more = {"model": HAIKU, "phase": "code", "input_tokens": 500, "output_tokens": 20}
    assert httpx.post(f"{orc.base_url}/api/tasks/TASK-001/usage", json=more).status_code == 201
    expect(usage_rows).to_have_count(2)
    report = orc.get("/api/tasks/TASK-001/usage").json()
    expect(page.locator("#task-usage-total")).to_have_text(
        f"15,976 tokens · {money(report['cost_usd'])}"
    )
    # Members and up see the actions that the task's status allows.
    expect(page.locator("#task-actions button", has_text="Pause")).to_be_visible()
    page.locator("#task-actions button", has_text="Pause").click()
    expect(page.locator("#task-status")).to_have_text("paused")
    assert orc.get("/api/tasks/TASK-001").json()["status"] == "paused"
    screenshot(page, "task-detail-1280")

    # Phone width: the table drops its optional columns instead of overflowing the screen.
    page.set_viewport_size(PHONE)
    page.goto(orc.base_url + "/#/tasks")
    expect(row(page, "TASK-001")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "tasks-390")
    page.context.close()


def test_cost_page_shows_what_the_api_reports(chromium: Browser, orc: OrcServer):
    api = httpx.Client(base_url=orc.base_url, timeout=10)
    first = api.post("/api/tasks", json={"title": "Plan the migration"}).json()["id"]
    second = api.post("/api/tasks", json={"title": "Write the docs"}).json()["id"]
    api.post(
        f"/api/tasks/{first}/usage",
        json={"model": SONNET, "input_tokens": 250_000, "output_tokens": 40_000},
    )
    api.post(
        f"/api/tasks/{second}/usage",
        json={"model": HAIKU, "input_tokens": 90_000, "cache_read_tokens": 1_000_000},
    )
    page = open_live(chromium, orc, "/#/cost")
    summary = api.get("/api/cost/summary").json()
    for period in ("today", "week", "month"):
        card = page.locator(f"#cost-{period}")
        expect(card.locator(".cost")).to_have_text(money(summary[period]["cost_usd"]))
        expect(card.locator(".tokens")).to_have_text(f"{summary[period]['total_tokens']:,} tokens")
    for model in summary["by_model"]:
        line = page.locator(f'#by-model-body tr[data-model="{model["model"]}"]')
        expect(line).to_contain_text(f"{model['total_tokens']:,}")
        expect(line).to_contain_text(money(model["cost_usd"]))
    top = page.locator("#top-tasks-body tr")
    expect(top).to_have_count(2)
    for index, item in enumerate(summary["top_tasks"]):
        expect(top.nth(index)).to_contain_text(item["task_id"])
        expect(top.nth(index)).to_contain_text(money(item["cost_usd"]))
    bars = page.locator("#cost-chart rect.bar")
    expect(bars).to_have_count(30)
    today = api.get("/api/cost/timeseries", params={"days": 30}).json()["buckets"][-1]
    assert float(bars.last.get_attribute("height") or 0) > 0
    expect(bars.last.locator("title")).to_have_text(
        f"{today['date']}: {money(today['cost_usd'])}, {today['total_tokens']:,} tokens"
    )

    # New usage moves the numbers without a reload.
    api.post(f"/api/tasks/{second}/usage", json={"model": SONNET, "output_tokens": 100_000})
    fresh = api.get("/api/cost/summary").json()
    expect(page.locator("#cost-today .cost")).to_have_text(money(fresh["today"]["cost_usd"]))
    assert still_same_document(page)
    screenshot(page, "cost-1280")
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "cost-390")

    # System: the readiness answer as the API gives it; the backup panel is a placeholder.
    page.set_viewport_size(DESKTOP)
    page.goto(orc.base_url + "/#/system")
    ready = api.get("/api/health/ready").json()
    facts = page.locator("#system-facts")
    expect(facts).to_contain_text(ready["version"])
    expect(page.locator("#ready-status")).to_have_text(ready["status"])
    for name, result in ready["checks"].items():
        expect(page.locator(f'#checks-body tr[data-check="{name}"]')).to_contain_text(result)
    expect(facts).to_contain_text("Worker heartbeat")
    expect(page.locator("#backup-panel")).to_be_visible()
    screenshot(page, "system-1280")
    page.context.close()
    api.close()


def test_the_page_reconnects_after_a_restart_and_shows_what_changed_meanwhile(
    chromium: Browser, server_factory, migrated, sqlite_env, repo
):
    with_project(sqlite_env, repo)
    server = server_factory(sqlite_env, "--no-worker").start()
    run_orc(["new", "Before the restart"], sqlite_env)
    page = open_live(chromium, server)
    expect(row(page, "TASK-001")).to_be_visible()

    # SIGKILL the launcher, the API process and its workers: no goodbye on the socket.
    server.kill()
    live = page.locator("#live")
    expect(live).to_have_attribute("data-state", "reconnecting")
    # "Reconnecting…", then "Server unreachable; retrying…" after a few attempts (timing).
    expect(live).to_contain_text(re.compile("Reconnecting|retrying"))
    screenshot(page, "tasks-reconnecting-1280")

    # Changes while the server is down land in the store; the page must not miss them.
    made = run_orc(["new", "Made while the server was down"], sqlite_env)
    assert made.returncode == 0, made.stderr
    time.sleep(1)  # let the page fail at least one more attempt
    expect(live).to_have_attribute("data-state", "reconnecting")

    server_factory(sqlite_env, "--no-worker", port=server.port).start()
    expect(live).to_have_attribute("data-state", "live", timeout=30_000)
    expect(row(page, "TASK-002").locator(".title")).to_have_text("Made while the server was down")
    # And it stays live: a change after the restart arrives as before.
    assert httpx.post(f"{server.base_url}/api/tasks/TASK-002/run").status_code == 202
    expect(row(page, "TASK-002").locator(".status")).to_have_text("queued")
    assert still_same_document(page)
    page.context.close()


def first_paint(page: Page) -> dict[str, float | None]:
    """Milliseconds from navigation start: the page's bytes received, first contentful paint."""
    return page.evaluate(
        """() => ({
        response_end: performance.getEntriesByType('navigation')[0]?.responseEnd ?? null,
        fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null,
    })"""
    )


def test_the_page_loads_with_only_loopback_reachable_small_and_fast(
    chromium: Browser, orc: OrcServer
):
    assert orc.get("/auth/config").json() == {"auth": "none"}
    context, page, guard = open_page(chromium)
    sizes: dict[str, int] = {}
    page.on("response", lambda r: sizes.__setitem__(r.url, len(r.body())))
    response = page.goto(orc.base_url + "/")
    assert response is not None and response.status == 200
    # The browser itself refuses anything but this server (defence in depth against a stray URL).
    assert "default-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    for view, heading in (("cost", "Cost"), ("system", "System"), ("tasks", "Tasks")):
        page.locator(f'#nav a[data-view="{view}"]').click()
        expect(page.locator(f"#view-{view} h1")).to_have_text(heading)
    page.wait_for_load_state("networkidle")
    assert guard.blocked == [], f"the page tried to reach other hosts: {guard.blocked}"
    assert guard.allowed, "the guard saw no requests at all"

    assets = {u: n for u, n in sizes.items() if "/api/" not in u and "/auth/" not in u}
    total = sum(assets.values())
    print(f"dashboard assets: {total} bytes: {assets}")
    assert total < ASSET_BUDGET_BYTES
    # The first load also pays for a cold browser renderer; it is printed, not judged.
    print(f"first contentful paint, first load of a fresh browser context: {first_paint(page)}")

    # Keyboard, from a fresh load: the skip link comes first, then the navigation, with Enter.
    page.reload()
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    paint = first_paint(page)
    print(f"first contentful paint, reload: {paint}")
    assert paint["fcp"] is not None and paint["fcp"] < FIRST_PAINT_BUDGET_MS
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Cost"
    page.keyboard.press("Enter")
    expect(page.locator("#view-cost")).to_be_visible()
    context.close()


def test_package_data_ships_the_dashboard_files():
    """A non-editable install serves the page too: package-data lists the files it links to."""
    import tomllib

    root = Path(__file__).resolve().parent.parent
    package_data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["orc"]
    assert "web/app/*" in package_data
    app = root / "orc" / "web" / "app"
    assert {p.name for p in app.iterdir()} >= {"index.html", "app.js", "app.css"}


def test_older_and_newer_pages_follow_the_keyset_cursor(chromium: Browser, orc: OrcServer):
    for i in range(1, 26):
        assert httpx.post(f"{orc.base_url}/api/tasks", json={"title": f"t{i}"}).status_code == 201
    page = open_live(chromium, orc)
    expect(page.locator("#page-info")).to_have_text("1\N{EN DASH}20 of 25")
    expect(row(page, "TASK-025")).to_be_visible()
    page.locator("#next-page").click()
    expect(page.locator("#page-info")).to_have_text("21\N{EN DASH}25 of 25")
    expect(page.locator("#tasks-body tr")).to_have_count(5)
    expect(row(page, "TASK-001")).to_be_visible()
    expect(page.locator("#next-page")).to_be_disabled()
    # A task created meanwhile does not shift the older page: it starts below TASK-006.
    assert httpx.post(f"{orc.base_url}/api/tasks", json={"title": "new"}).status_code == 201
    expect(page.locator("#page-info")).to_have_text("21\N{EN DASH}25 of 26")
    expect(row(page, "TASK-005")).to_be_visible()
    page.locator("#prev-page").click()
    expect(page.locator("#page-info")).to_have_text("1\N{EN DASH}20 of 26")
    expect(row(page, "TASK-026")).to_be_visible()
    expect(page.locator("#next-page")).to_be_enabled()
    assert still_same_document(page)
