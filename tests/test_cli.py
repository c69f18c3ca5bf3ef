"""The real `orc` command line, run as a subprocess: one-line errors, init, config show, tokens."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orc.config import SETTINGS
from tests.support import base_env, free_port, run_orc

TOKEN = "tok-O8s2sSN7UyUbiFsYGiPcMEUwfa2AeStX"
DB_PASSWORD = "pg-Pa55word-never-shown"


def _one_error_line(result) -> str:
    """The single stderr line of a failed command (and no traceback)."""
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("orc: error: ")
    return lines[0]


def _bad_env(tmp_path: Path, case: str) -> tuple[dict[str, str], Path, str]:
    """(env, cwd, text the error must contain) for one bad configuration."""
    env = base_env(tmp_path)
    env["ORC_PORT"] = str(free_port())
    cwd = tmp_path / "project"
    cwd.mkdir()
    if case == "port":
        env["ORC_PORT"] = "abc"
        return env, cwd, "ORC_PORT"
    if case == "log_level":
        env["ORC_LOG_LEVEL"] = "loud"
        return env, cwd, "ORC_LOG_LEVEL"
    if case == "database_url":
        env["DATABASE_URL"] = "mysql://x/y"
        return env, cwd, "DATABASE_URL"
    if case == "unreadable_config":
        # Tests run as root, where chmod does not stop reads; a directory cannot be read.
        path = Path(env["ORC_HOME"]) / "config.yaml"
        path.mkdir(parents=True)
        return env, cwd, str(path)
    if case == "invalid_project_yaml":
        path = cwd / ".orc" / "config.yaml"
        path.parent.mkdir()
        path.write_text("port: 9000\nlog_level: [debug\n")
        subdir = cwd / "src"
        subdir.mkdir()
        return env, subdir, str(path)
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case", ["port", "log_level", "database_url", "unreadable_config", "invalid_project_yaml"]
)
def test_serve_with_bad_configuration_exits_2_with_one_line(tmp_path, case):
    env, cwd, names = _bad_env(tmp_path, case)
    result = run_orc(["serve"], env, cwd=cwd, timeout=30)
    assert result.returncode == 2, result.stderr
    line = _one_error_line(result)
    assert names in line
    assert result.stdout == ""


@pytest.mark.parametrize("command", [["config", "show"], ["migrate", "--dry-run"], ["init"]])
def test_other_commands_report_bad_configuration_the_same_way(tmp_path, command):
    env = base_env(tmp_path)
    env["ORC_LOG_FORMAT"] = "xml"
    result = run_orc(command, env, cwd=tmp_path)
    assert result.returncode == 2
    assert "ORC_LOG_FORMAT='xml'" in _one_error_line(result)
    assert not (tmp_path / ".orc").exists()


def test_serve_with_a_bad_port_option_exits_2_with_one_line(tmp_path):
    result = run_orc(["serve", "--port", "abc"], base_env(tmp_path), timeout=30)
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "--port" in line
    assert "abc" in line


def test_unknown_command_exits_2_with_one_line(tmp_path):
    result = run_orc(["serv"], base_env(tmp_path))
    assert result.returncode == 2
    assert "serv" in _one_error_line(result)


def test_serve_on_all_interfaces_without_auth_is_refused(tmp_path):
    port = str(free_port())
    result = run_orc(["serve", "--host", "0.0.0.0", "--port", port], base_env(tmp_path), timeout=30)
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "0.0.0.0" in line
    assert "set ORC_AUTH_TOKEN" in line
    assert "orc token generate" in line


def test_serve_refuses_a_short_token(tmp_path):
    env = base_env(tmp_path)
    env["ORC_AUTH_TOKEN"] = "too-short-token"
    result = run_orc(["serve", "--port", str(free_port())], env, timeout=30)
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "ORC_AUTH_TOKEN" in line
    assert "32" in line
    assert "too-short-token" not in line


def test_serve_refuses_auth_enabled_without_a_token(tmp_path):
    env = base_env(tmp_path)
    env["ORC_AUTH_ENABLED"] = "true"
    result = run_orc(["serve", "--port", str(free_port())], env, timeout=30)
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "ORC_AUTH_ENABLED" in line
    assert "ORC_AUTH_TOKEN" in line


def test_init_creates_the_project_config_and_never_overwrites_it(tmp_path):
    env = base_env(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    path = project / ".orc" / "config.yaml"

    first = run_orc(["init"], env, cwd=project)
    assert first.returncode == 0, first.stderr
    assert path.is_file()
    assert str(path) in first.stdout
    assert "created" in first.stdout
    assert Path(env["ORC_HOME"]).is_dir()

    # The generated file is valid and changes nothing until a line is uncommented.
    shown = run_orc(["config", "show", "--json"], env, cwd=project)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["workers"]["source"] == "default"

    path.write_text("# mine\nworkers: 3\n")
    edited = path.read_bytes()
    second = run_orc(["init"], env, cwd=project)
    assert second.returncode == 0, second.stderr
    assert "already exists" in second.stdout
    assert path.read_bytes() == edited

    shown = run_orc(["config", "show", "--json"], env, cwd=project / ".orc")
    payload = json.loads(shown.stdout)
    assert payload["workers"] == {"env": "ORC_WORKERS", "value": "3", "source": str(path)}


def _show_env(tmp_path: Path) -> dict[str, str]:
    env = base_env(tmp_path)
    env["ORC_AUTH_TOKEN"] = TOKEN
    env["DATABASE_URL"] = f"postgres://orc:{DB_PASSWORD}@db.example:5432/orc?sslmode=require"
    env["ORC_LOG_LEVEL"] = "debug"
    return env


def test_config_show_lists_every_setting_with_its_source_redacted(tmp_path):
    result = run_orc(["config", "show"], _show_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert TOKEN not in out
    assert DB_PASSWORD not in out
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    for setting in SETTINGS:
        assert setting.name in rows, f"{setting.name} missing from:\n{out}"
        assert setting.env in rows[setting.name]
    assert "********" in rows["auth_token"]
    assert rows["auth_token"].rstrip().endswith("env ORC_AUTH_TOKEN")
    assert "postgres://orc:***@db.example:5432/orc?sslmode=require" in rows["database_url"]
    assert rows["database_url"].rstrip().endswith("env DATABASE_URL")
    assert rows["log_level"].rstrip().endswith("env ORC_LOG_LEVEL")
    assert rows["port"].rstrip().endswith("default")
    assert rows["home"].rstrip().endswith("env ORC_HOME")


def test_config_show_json_lists_every_setting_with_its_source_redacted(tmp_path):
    result = run_orc(["config", "show", "--json"], _show_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout
    assert DB_PASSWORD not in result.stdout
    payload = json.loads(result.stdout)
    assert list(payload) == [s.name for s in SETTINGS]
    for setting in SETTINGS:
        assert payload[setting.name]["env"] == setting.env
        assert payload[setting.name]["source"]
    assert payload["auth_token"] == {
        "env": "ORC_AUTH_TOKEN",
        "value": "********",
        "source": "env ORC_AUTH_TOKEN",
    }
    assert payload["database_url"]["value"] == (
        "postgres://orc:***@db.example:5432/orc?sslmode=require"
    )
    assert payload["auth_enabled"]["source"] == "env ORC_AUTH_TOKEN"
    assert payload["log_level"] == {
        "env": "ORC_LOG_LEVEL",
        "value": "debug",
        "source": "env ORC_LOG_LEVEL",
    }
    assert payload["port"] == {"env": "ORC_PORT", "value": "8080", "source": "default"}


def test_config_show_names_the_secret_file_variant_as_source(tmp_path):
    env = base_env(tmp_path)
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    env["ORC_AUTH_TOKEN_FILE"] = str(secret)
    result = run_orc(["config", "show", "--json"], env)
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout
    assert json.loads(result.stdout)["auth_token"]["source"] == "env ORC_AUTH_TOKEN_FILE"


def test_migrate_dry_run_lists_pending_then_nothing_after_migrate(tmp_path):
    env = base_env(tmp_path)
    dry = run_orc(["migrate", "--dry-run"], env)
    assert dry.returncode == 0, dry.stderr
    assert "0001_initial" in dry.stdout
    assert re.search(r"^pending 0001_initial$", dry.stdout, re.MULTILINE)

    applied = run_orc(["migrate"], env)
    assert applied.returncode == 0, applied.stderr
    assert "0001_initial" in applied.stdout

    dry = run_orc(["migrate", "--dry-run"], env)
    assert dry.returncode == 0, dry.stderr
    assert "0001_initial" not in dry.stdout
    assert "no pending migrations" in dry.stdout

    again = run_orc(["migrate"], env)
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout


def test_token_generate_prints_a_new_url_safe_token_each_time(tmp_path):
    env = base_env(tmp_path)
    tokens = []
    for _ in range(2):
        result = run_orc(["token", "generate"], env)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == 1
        assert re.fullmatch(r"[A-Za-z0-9_-]{32,}", lines[0]), lines[0]
        tokens.append(lines[0])
    assert tokens[0] != tokens[1]


def test_healthcheck_fails_in_one_line_when_nothing_listens(tmp_path):
    env = base_env(tmp_path)
    port = str(free_port())
    env["ORC_PORT"] = port
    result = run_orc(["healthcheck", "--timeout", "2"], env, timeout=30)
    assert result.returncode == 1
    line = _one_error_line(result)
    assert f":{port}/api/health" in line


def test_healthcheck_succeeds_against_a_running_server(server_factory, migrated, sqlite_env):
    server = server_factory(sqlite_env).start()
    env = dict(sqlite_env)
    env["ORC_PORT"] = str(server.port)
    result = run_orc(["healthcheck"], env, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")
    assert f":{server.port}/api/health" in result.stdout
    code, _ = server.terminate()
    assert code == 0, server.logs()


def test_serve_no_migrate_leaves_the_schema_to_whoever_migrates(server_factory, sqlite_env):
    server = server_factory(sqlite_env, "--no-worker", "--no-migrate").start()
    ready = server.get("/api/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["migrations"].startswith("pending")
    # orc healthcheck --ready shows the failing checks and exits 1 (the troubleshooting command).
    result = run_orc(["healthcheck", "--ready"], dict(sqlite_env, ORC_PORT=str(server.port)))
    assert result.returncode == 1
    assert json.loads(result.stdout)["status"] == "degraded"
    assert "pending" in result.stdout
