"""Personal access tokens: a bounded, explicit lifetime; what the server token minted dies
with it; each token its own caller. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest

from orc.cli.auth_commands import parse_expiry
from tests.in_process import LiveApp
from tests.support import run_orc

SERVER_TOKEN = "pat-tests-R7mK2vQ9xW4pL8nT3jB6cF1hZ5sD0gYa"
ROTATED_TOKEN = "pat-tests-rotated-Hq3Lw8Vn2Kx7Pb5Tm9Jc4Fr1Zd6Gs0Ye"


def _as(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


@pytest.fixture
def orc(app_factory: Callable[..., LiveApp], migrated: None, orc_env: dict[str, str]) -> LiveApp:
    return app_factory(orc_env, ORC_AUTH_TOKEN=SERVER_TOKEN, ORC_BASE_URL="http://orc.test")


def _mint(live: LiveApp, token: str, **body: object) -> dict[str, object]:
    made = live.http.post("/api/tokens", json={"name": "ci", **body}, headers=_as(token))
    assert made.status_code == 201, made.text
    return dict(made.json())


@pytest.mark.parametrize("days", [None, 0, 366, 3650, "never", "90"])
def test_a_token_always_expires_within_the_documented_maximum(orc: LiveApp, days: object):
    response = orc.http.post(
        "/api/tokens", json={"name": "forever", "expires_in_days": days}, headers=_as(SERVER_TOKEN)
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert "expires_in_days" in response.json()["message"]


def test_the_default_lifetime_is_90_days_and_365_is_allowed(orc: LiveApp):
    now = datetime.now(UTC)
    default = datetime.fromisoformat(str(_mint(orc, SERVER_TOKEN)["expires_at"]))
    assert timedelta(days=89) < default - now <= timedelta(days=90, minutes=1)
    longest = _mint(orc, SERVER_TOKEN, expires_in_days=365)["expires_at"]
    assert datetime.fromisoformat(str(longest)) - now <= timedelta(days=365, minutes=1)


def test_the_cli_caps_durations_and_only_the_operator_asks_for_never():
    assert parse_expiry("365d") == timedelta(days=365)
    assert parse_expiry("never") is None  # on the server, as its operator
    with pytest.raises(click.UsageError, match="longer than 365 days"):
        parse_expiry("53w")


def test_tokens_minted_with_the_server_token_die_when_it_is_rotated(
    app_factory: Callable[..., LiveApp], orc: LiveApp, orc_env: dict[str, str]
):
    direct = str(_mint(orc, SERVER_TOKEN)["token"])
    browser = orc.client("127.0.0.41")
    ours = {"Origin": "http://orc.test"}
    assert browser.post("/auth/session", json={"token": SERVER_TOKEN}, headers=ours).is_success
    via_session = browser.post("/api/tokens", json={"name": "dash"}, headers=ours)
    assert via_session.status_code == 201, via_session.text
    operators = run_orc(["token", "create", "--name", "cron"], orc.env).stdout.strip()
    minted = {"direct": direct, "session": str(via_session.json()["token"])}
    for token in (*minted.values(), operators):
        assert orc.get("/api/tasks", headers=_as(token)).status_code == 200
    orc.close()

    rotated = app_factory(orc_env, ORC_AUTH_TOKEN=ROTATED_TOKEN, ORC_BASE_URL="http://orc.test")
    for how, token in minted.items():
        refused = rotated.get("/api/tasks", headers=_as(token))
        assert refused.status_code == 401, f"minted through the {how} outlived the rotation"
    # The operator's token (orc token create, on the server) was never the server token's.
    assert rotated.get("/api/tasks", headers=_as(operators)).status_code == 200


def test_two_tokens_with_one_name_are_two_callers(orc: LiveApp, repo: Path):
    admin = _as(SERVER_TOKEN)
    assert orc.http.post("/api/projects", json={"path": str(repo)}, headers=admin).is_success
    first = str(_mint(orc, SERVER_TOKEN, role="member")["token"])
    second = str(_mint(orc, SERVER_TOKEN, role="member")["token"])
    task = orc.http.post("/api/tasks", json={"title": "mine"}, headers=_as(first))
    assert task.status_code == 201, task.text
    owner = task.json()["created_by"]
    assert owner.startswith("token:ci#")
    me = orc.get("/auth/me", headers=_as(second)).json()["subject"]
    assert me.startswith("token:ci#") and me != owner
    path = f"/api/tasks/{task.json()['id']}"
    taken = orc.http.patch(path, json={"title": "theirs"}, headers=_as(second))
    assert taken.status_code == 403, taken.text
    kept = orc.http.patch(path, json={"title": "still mine"}, headers=_as(first))
    assert kept.status_code == 200, kept.text
