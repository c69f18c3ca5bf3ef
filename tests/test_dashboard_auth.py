"""Signing in to the dashboard in a real browser: the token form (tier 2) and OIDC (tier 3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import PHONE, open_page, screenshot
from tests.oidc_provider import Provider, oidc_env, run_provider
from tests.support import base_env, free_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SERVER_TOKEN = "dashboard-test-token-pvI29cRDVxknuXcO1kUcMGpFla4sXJnv"
CLIENT_ID = "orc-dashboard"


def session_cookie(page: Page) -> str:
    cookies = {c["name"]: c for c in page.context.cookies()}
    cookie = cookies["orc_session"]
    # The browser holds the session only in an HttpOnly cookie that scripts cannot read.
    assert cookie["httpOnly"] is True
    return cookie["value"]


def me_with(base_url: str, cookie: str) -> int:
    """Status of /auth/me for a bare cookie, from outside the browser."""
    return httpx.get(f"{base_url}/auth/me", cookies={"orc_session": cookie}, timeout=10).status_code


def stored_in_page(page: Page) -> str:
    return str(page.evaluate("JSON.stringify([{...localStorage}, {...sessionStorage}])"))


def test_token_sign_in_uses_a_session_cookie_and_sign_out_ends_it(
    chromium: Browser, server_factory, tmp_path: Path
):
    port = free_port()
    env = base_env(tmp_path)
    env.update(ORC_AUTH_TOKEN=SERVER_TOKEN, ORC_BASE_URL=f"http://127.0.0.1:{port}")
    server = server_factory(env, "--no-worker", port=port).start()
    # Public: the page asks which sign-in to offer before anyone has signed in.
    assert server.get("/auth/config").json() == {"auth": "token"}
    context, page, guard = open_page(chromium)
    page.goto(server.base_url + "/")
    expect(page.locator("#token-form")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    expect(page.locator("#oidc-login")).to_be_hidden()
    screenshot(page, "login-token-1280")

    page.get_by_label("Access token or server token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#login-error")).to_contain_text("not valid")

    page.get_by_label("Access token or server token").fill(SERVER_TOKEN)
    page.keyboard.press("Enter")
    expect(page.locator("#user-name")).to_have_text("admin-token")
    expect(page.locator("#user-role")).to_have_text("admin")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    assert SERVER_TOKEN not in stored_in_page(page)
    cookie = session_cookie(page)
    assert me_with(server.base_url, cookie) == 200

    # A change from the page passes the server's CSRF check and shows up live.
    page.get_by_label("New task").fill("Made in the browser")
    page.get_by_role("button", name="Create").click()
    expect(page.locator('#tasks-body tr[data-task-id="TASK-001"]')).to_contain_text(
        "Made in the browser"
    )
    assert (
        httpx.get(
            f"{server.base_url}/api/tasks/TASK-001",
            headers={"Authorization": f"Bearer {SERVER_TOKEN}"},
        ).json()["created_by"]
        == "admin-token"
    )

    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#token-form")).to_be_visible()
    expect(page.locator("#user")).to_be_hidden()
    assert me_with(server.base_url, cookie) == 401
    assert page.evaluate("fetch('/api/tasks').then(r => r.status)") == 401
    page.set_viewport_size(PHONE)
    screenshot(page, "login-token-390")
    assert guard.blocked == []
    context.close()


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with run_provider() as running:
        yield running


def oidc_sign_in_with_httpx(base_url: str, email: str) -> httpx.Client:
    """Someone else signs in, outside the browser (the first one becomes the owner)."""
    client = httpx.Client(base_url=base_url, timeout=10)
    start = client.get("/auth/login")
    consent = httpx.post(start.headers["location"], data={"sub": email}, timeout=10)
    assert client.get(consent.headers["location"]).status_code == 302
    return client


def test_oidc_sign_in_shows_user_and_role_hides_what_the_role_may_not_do_and_signs_out(
    chromium: Browser, provider: Provider, server_factory, tmp_path: Path
):
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = oidc_env(base_env(tmp_path), provider, port, CLIENT_ID)
    server = server_factory(env, "--no-worker", port=port).start()
    assert server.get("/auth/config").json() == {"auth": "oidc"}
    owner = oidc_sign_in_with_httpx(base_url, "first@example.com")

    # The page sends a signed-out visitor to the identity provider, which sends them back.
    context, page, _ = open_page(chromium)
    page.goto(base_url + "/")
    page.wait_for_url(f"{provider.issuer}/**")
    page.locator('input[name="sub"]').fill("carol@example.com")
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{base_url}/**")
    expect(page.locator("#user-name")).to_have_text("carol@example.com")
    expect(page.locator("#user-role")).to_have_text("member")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator("#new-task")).to_be_visible()  # members create tasks
    page.goto(base_url + "/#/system")
    expect(page.locator("#backup-panel")).to_be_visible()
    expect(page.locator("#backup-now")).to_be_hidden()  # backups are for admins
    screenshot(page, "system-member-1280")

    # The owner makes carol a viewer: her page hides the controls, and the server refuses anyway.
    origin = {"Origin": base_url}
    carol = next(u for u in owner.get("/api/users").json()["items"] if u["email"].startswith("c"))
    demoted = owner.patch(f"/api/users/{carol['id']}", json={"role": "viewer"}, headers=origin)
    assert demoted.status_code == 200, demoted.text
    made = owner.post("/api/tasks", json={"title": "The owner's task"}, headers=origin)
    assert made.status_code == 201, made.text
    page.goto(base_url + "/#/tasks/TASK-001")
    page.reload()
    expect(page.locator("#user-role")).to_have_text("viewer")
    expect(page.locator("#task-title")).to_contain_text("The owner's task")
    expect(page.locator("#task-actions")).to_be_hidden()
    page.goto(base_url + "/#/tasks")
    expect(page.locator("#new-task")).to_be_hidden()
    refused = page.evaluate(
        """async () => {
        const me = await (await fetch('/auth/me')).json();
        const r = await fetch('/api/tasks', {method: 'POST', body: '{"title": "x"}',
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf_token}});
        return r.status;
    }"""
    )
    assert refused == 403

    cookie = session_cookie(page)
    page.get_by_role("button", name="Sign out").click()
    # Signed out: the page offers to sign in again instead of bouncing straight back.
    expect(page.locator("#oidc-button")).to_be_visible()
    assert page.url.startswith(base_url)
    assert me_with(base_url, cookie) == 401
    screenshot(page, "login-oidc-1280")
    context.close()
    owner.close()
