"""Tier 2: with ORC_AUTH_TOKEN set, everything but the probes needs the bearer token."""

from __future__ import annotations

import pytest

from orc.api.app import create_app
from orc.config import load_settings

TOKEN = "tier2-1MHIpPrM9j0to0JSoWpZkgqny394A5S9"


@pytest.fixture
def client(tmp_path, schema_templates):
    settings = load_settings(
        environ={"ORC_HOME": str(tmp_path / "home"), "ORC_AUTH_TOKEN": TOKEN}, cwd=tmp_path
    )
    assert settings.auth_enabled
    schema_templates.copy_sqlite(settings.database.sqlite_path)
    return create_app(settings).asgi_client


async def test_probes_need_no_token(client):
    _, health = await client.get("/api/health")
    assert health.status_code == 200
    _, ready = await client.get("/api/health/ready")
    assert ready.status_code in (200, 503)  # answers without credentials either way


@pytest.mark.parametrize(
    "path", ["/api/metrics", "/api/healthx", "/api/health/../metrics", "/api/health/", "/nowhere"]
)
async def test_everything_else_needs_the_token(client, path):
    _, response = await client.get(path)
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_the_dashboard_shell_is_public_and_its_data_is_not(client):
    """The page, its files and which sign-in to offer hold no data; the API behind them does."""
    for path in ("/", "/app/app.js", "/app/app.css"):
        _, response = await client.get(path)
        assert response.status_code == 200, path
    _, config = await client.get("/auth/config")
    assert config.json == {"auth": "token"}
    _, tasks = await client.get("/api/tasks")
    assert tasks.status_code == 401


@pytest.mark.parametrize(
    "header", ["Bearer wrong-token", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "]
)
async def test_wrong_or_malformed_credentials_are_refused(client, header):
    _, response = await client.get("/api/metrics", headers={"Authorization": header})
    assert response.status_code == 401


async def test_the_right_token_opens_the_api(client):
    _, response = await client.get("/api/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert "orc_http_requests_total" in response.text


def test_the_token_never_appears_in_logs(server_factory, sqlite_env):
    import httpx

    sqlite_env["ORC_AUTH_TOKEN"] = TOKEN
    server = server_factory(sqlite_env).start()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(server.base_url + "/api/metrics", headers=headers).status_code == 200
    assert httpx.get(server.base_url + "/api/metrics").status_code == 401
    server.terminate()
    assert TOKEN not in server.logs()
