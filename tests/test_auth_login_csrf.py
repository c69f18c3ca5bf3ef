"""Login CSRF: another site cannot sign a visitor's browser in (as the attacker) or out.

A cross-site HTML form can POST ``enctype=text/plain`` with any body and the browser adds
its own ``Origin``; orc takes a session only as JSON, and only from its own origin when the
browser names one. On SQLite and PostgreSQL (sessions are rows).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from tests.in_process import LiveApp

SERVER_TOKEN = "login-csrf-Zq8vN2pXw4RkT7yLm3Hc9bJf6sDa1GuE"
EVIL = "https://evil.example"


@pytest.fixture
def orc(app_factory: Callable[..., LiveApp], migrated: None, orc_env: dict[str, str]) -> LiveApp:
    return app_factory(orc_env, ORC_AUTH_TOKEN=SERVER_TOKEN, ORC_BASE_URL="http://orc.test")


def _attackers_token(orc: LiveApp) -> str:
    made = orc.http.post(
        "/api/tokens",
        json={"name": "attacker", "role": "viewer"},
        headers={"Authorization": f"Bearer {SERVER_TOKEN}"},
    )
    assert made.status_code == 201, made.text
    return str(made.json()["token"])


def _post_session(client: httpx.Client, body: str, content_type: str, origin: str | None):
    headers = {"Content-Type": content_type}
    if origin is not None:
        headers["Origin"] = origin
    return client.post("/auth/session", content=body.encode(), headers=headers)


@pytest.mark.parametrize(
    ("content_type", "origin", "status", "error"),
    [
        # The review's attack: a text/plain form from another site.
        ("text/plain", EVIL, 415, "unsupported_media_type"),
        ("application/x-www-form-urlencoded", EVIL, 415, "unsupported_media_type"),
        ("multipart/form-data; boundary=x", EVIL, 415, "unsupported_media_type"),
        # text/plain even from our own origin: a form on an injected page is still a form.
        ("text/plain", "ours", 415, "unsupported_media_type"),
        # JSON (needs CORS, which orc never grants) from a foreign or opaque origin.
        ("application/json", EVIL, 403, "csrf_failed"),
        ("application/json", "null", 403, "csrf_failed"),
        ("application/json", "http://orc.test.evil.example", 403, "csrf_failed"),
    ],
)
def test_a_cross_site_sign_in_gets_no_session(
    orc: LiveApp, content_type: str, origin: str, status: int, error: str
):
    victim = orc.client("127.0.0.21")
    body = json.dumps({"token": _attackers_token(orc)})
    origin = orc.base_url if origin == "ours" else origin
    response = _post_session(victim, body, content_type, origin)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert "set-cookie" not in response.headers
    assert victim.get("/auth/me").status_code == 401


@pytest.mark.parametrize("origin", ["ours", None], ids=["dashboard", "cli-without-origin"])
def test_json_from_our_origin_or_from_a_non_browser_signs_in(orc: LiveApp, origin: str | None):
    client = orc.client("127.0.0.22")
    origin = orc.base_url if origin == "ours" else origin
    body = json.dumps({"token": SERVER_TOKEN})
    response = _post_session(client, body, "application/json; charset=utf-8", origin)
    assert response.status_code == 200, response.text
    assert client.get("/auth/me").json()["via"] == "session"


def test_another_site_cannot_sign_a_visitor_out(orc: LiveApp):
    browser = orc.client("127.0.0.23")
    ours = {"Origin": orc.base_url}
    signed_in = browser.post("/auth/session", json={"token": SERVER_TOKEN}, headers=ours)
    assert signed_in.status_code == 200
    for headers in (
        {"Origin": EVIL, "Content-Type": "application/json"},
        {"Origin": "null", "Content-Type": "application/json"},
        {"Origin": EVIL, "Content-Type": "text/plain"},
        {"Origin": orc.base_url, "Content-Type": "text/plain"},
        # No Origin and no X-CSRF-Token: as for any other change made with the cookie.
        {"Content-Type": "application/json"},
    ):
        refused = browser.post("/auth/logout", content=b"{}", headers=headers)
        assert refused.status_code in (403, 415), (headers, refused.text)
        assert browser.get("/auth/me").status_code == 200, "the session survived"
    csrf = signed_in.json()["csrf_token"]
    out = browser.post("/auth/logout", json={}, headers={"X-CSRF-Token": csrf})
    assert out.status_code == 200 and out.json()["signed_out"] is True
    assert browser.get("/auth/me").status_code == 401
