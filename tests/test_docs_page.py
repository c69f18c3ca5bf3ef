"""/docs works without internet: the OpenAPI spec and every asset of its page come from orc."""

from __future__ import annotations

import re

import pytest

from orc.api.app import create_app
from orc.config import load_settings


@pytest.fixture
def client(tmp_path, schema_templates):
    settings = load_settings(environ={"ORC_HOME": str(tmp_path / "home")}, cwd=tmp_path)
    schema_templates.copy_sqlite(settings.database.sqlite_path)
    return create_app(settings).asgi_client


async def test_docs_page_loads_only_local_assets(client):
    _, page = await client.get("/docs")
    assert page.status_code == 200
    html = page.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "an external asset"
    assets = re.findall(r"""(?:src|href)=["'](/docs/assets/[^"']+)""", html)
    assert len(assets) >= 2
    for asset in assets:
        _, response = await client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.body) > 1000


async def test_openapi_spec_lists_the_api_with_request_bodies(client):
    _, response = await client.get("/docs/openapi.json")
    spec = response.json
    for path in (
        "/api/tasks",
        "/api/tasks/{task_id}",
        "/api/tasks/{task_id}/usage",
        "/api/cost/summary",
        "/api/cost/timeseries",
        "/api/events",
        "/api/health",
    ):
        assert path in spec["paths"], path
    body = spec["paths"]["/api/tasks"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["properties"]["title"]["maxLength"] == 200
    assert body["schema"]["additionalProperties"] is False
