"""The team compose file with the spec's team `.env` (OIDC variables, no token): docker-compose
renders it, and orc starts with the environment it gives the orc service and signs users in at
the identity provider. No Docker engine: orc runs here, on SQLite instead of the db service and
with a local identity provider (oidc-provider-mock) in place of Google."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy_support import REPO
from tests.oidc_provider import run_provider
from tests.support import OrcServer, base_env

DEPLOY = REPO / "deploy"
# The spec's "`.env` for team", verbatim.
SPEC_TEAM_ENV = {
    "DOMAIN": "orc.company.com",
    "POSTGRES_PASSWORD": "secure-password-here",
    "OIDC_ISSUER": "https://accounts.google.com",
    "OIDC_CLIENT_ID": "your-client-id.apps.googleusercontent.com",
    "OIDC_CLIENT_SECRET": "your-client-secret",
}


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` of the team file with ``env`` as its .env (offline)."""
    compose = shutil.which("docker-compose", path=f"{Path(sys.executable).parent}:/usr/bin")
    if compose is None:
        pytest.fail("docker-compose is missing: scripts/test installs it")
    return subprocess.run(
        [compose, "-f", "docker-compose.team.yml", "config"],
        cwd=DEPLOY,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _rendered_orc_env(env: dict[str, str]) -> dict[str, str]:
    result = _compose_config(env)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return {k: str(v) for k, v in config["services"]["orc"]["environment"].items()}


def test_the_spec_team_env_renders_oidc_without_a_token():
    rendered = _rendered_orc_env(SPEC_TEAM_ENV)
    assert rendered["ORC_AUTH_TYPE"] == "oidc"
    assert rendered["ORC_OIDC_ISSUER"] == SPEC_TEAM_ENV["OIDC_ISSUER"]
    assert rendered["ORC_AUTH_TOKEN"] == ""


@pytest.mark.parametrize("missing", ["OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET"])
def test_the_team_file_says_which_oidc_value_is_missing(missing: str):
    result = _compose_config({k: v for k, v in SPEC_TEAM_ENV.items() if k != missing})
    assert result.returncode != 0
    assert f"set {missing} in .env" in result.stderr


def test_orc_starts_with_the_team_services_environment_and_signs_in_with_oidc(tmp_path: Path):
    with run_provider() as idp:
        rendered = _rendered_orc_env({**SPEC_TEAM_ENV, "OIDC_ISSUER": idp.issuer})
        env = base_env(tmp_path)
        env.update(rendered)
        env["DATABASE_URL"] = f"sqlite://{tmp_path / 'orc.db'}"  # the db service is not here
        server = OrcServer(env, "--no-worker")
        try:
            server.start()
            login = httpx.get(server.base_url + "/auth/login", timeout=10)
            assert login.status_code in (302, 303), login.text
            assert login.headers["location"].startswith(idp.issuer)
            unauthenticated = httpx.get(server.base_url + "/api/tasks", timeout=10)
            assert unauthenticated.status_code == 401
            code, _ = server.terminate()
            assert code == 0
            assert "ignored" not in server.logs()
        finally:
            server.kill()


def test_oidc_settings_given_while_oidc_is_off_are_named_in_a_start_up_warning(tmp_path: Path):
    env = base_env(tmp_path)
    env.update(ORC_OIDC_ISSUER="https://accounts.example.com", ORC_OIDC_CLIENT_ID="orc")
    server = OrcServer(env, "--no-worker")
    try:
        server.start()
        warnings = [r for r in server.log_records() if r.get("level") == "warning"]
        assert [r["message"] for r in warnings] == [
            "ORC_OIDC_ISSUER, ORC_OIDC_CLIENT_ID are set but ignored: OIDC sign-in is off "
            "(ORC_AUTH_TYPE=token); set ORC_AUTH_TYPE=oidc to use them"
        ]
    finally:
        server.kill()
