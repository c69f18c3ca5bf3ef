"""load_settings: defaults, the four layers, secrets, redaction and one-line errors."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from orc.auth.policy import check_auth_policy
from orc.auth.token import generate_token
from orc.cli.main import cli
from orc.config import (
    POSTGRES_URL_OPTIONS,
    SETTINGS,
    SETTINGS_BY_NAME,
    SSL_MODES,
    ConfigError,
    Settings,
    load_settings,
)
from orc.config.project_file import config_template

SECRET = "s3cr3t-Pa55word-never-shown"
TOKEN = "tok-GlTMhw6noT0EVXShlvYOv7Jr2gZwwJRH"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def load(home: Path, work: Path):
    """load_settings with ORC_HOME in tmp_path, run from tmp_path/work, plus the given env."""

    def load_(cwd: Path | None = None, **env: str) -> Settings:
        return load_settings(environ={"ORC_HOME": str(home), **env}, cwd=cwd or work)

    return load_


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _error(load, **kwargs: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(**kwargs)
    message = str(info.value)
    assert "\n" not in message, "a ConfigError is one line"
    return message


# Defaults


def test_defaults_match_the_spec(load, home: Path):
    settings = load()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.log_level == "info"
    assert settings.log_format == "json"
    assert settings.auth_type == "token"
    assert settings.auth_enabled is False
    assert settings.auth_token is None
    assert settings.base_url == "http://localhost:8080"
    assert settings.oidc_issuer is None
    assert settings.oidc_client_id is None
    assert settings.oidc_client_secret is None
    assert settings.workers == 1
    assert settings.home == home.absolute()
    assert settings.database_url.startswith("sqlite://")
    assert settings.database_url.endswith(str(home.absolute() / "orc.db"))
    assert settings.database.is_sqlite


def test_every_default_comes_from_settings_and_is_recorded_as_default(load):
    settings = load()
    for setting in SETTINGS:
        if setting.env_only:
            assert settings.sources[setting.name] == "env ORC_HOME"
            continue
        assert settings.sources[setting.name] == "default", setting.name
        if setting.default is not None:
            assert getattr(settings, setting.name) == setting.default, setting.name


def test_home_defaults_to_dot_orc_in_the_user_home(tmp_path: Path, work: Path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    settings = load_settings(environ={}, cwd=work)
    assert settings.home == (tmp_path / "user" / ".orc").absolute()
    assert settings.sources["home"] == "default"
    assert settings.database_url.endswith(str(tmp_path / "user" / ".orc" / "orc.db"))


# The four layers


def test_precedence_of_all_four_layers_with_sources(load, home: Path, work: Path):
    home_file = _write(home / "config.yaml", "log_level: debug\nport: 9001\nworkers: 3\n")
    project_file = _write(work / ".orc" / "config.yaml", "log_level: warning\nworkers: 4\n")

    settings = load(ORC_LOG_LEVEL="error")
    assert settings.log_level == "error"
    assert settings.sources["log_level"] == "env ORC_LOG_LEVEL"
    assert settings.workers == 4
    assert settings.sources["workers"] == str(project_file)
    assert settings.port == 9001
    assert settings.sources["port"] == str(home_file)
    assert settings.log_format == "json"
    assert settings.sources["log_format"] == "default"

    assert load().log_level == "warning"
    project_file.unlink()
    settings = load()
    assert (settings.log_level, settings.sources["log_level"]) == ("debug", str(home_file))
    home_file.unlink()
    settings = load()
    assert (settings.log_level, settings.sources["log_level"]) == ("info", "default")


def test_project_config_is_found_from_a_subdirectory(load, work: Path):
    project_file = _write(work / ".orc" / "config.yaml", "workers: 7\n")
    deep = work / "src" / "pkg" / "deep"
    deep.mkdir(parents=True)
    settings = load(cwd=deep)
    assert settings.workers == 7
    assert settings.sources["workers"] == str(project_file)


def test_only_the_nearest_project_config_is_read(load, work: Path):
    _write(work / ".orc" / "config.yaml", "workers: 5\nlog_level: debug\n")
    inner = _write(work / "inner" / ".orc" / "config.yaml", "workers: 6\n")
    settings = load(cwd=work / "inner")
    assert settings.workers == 6
    assert settings.sources["workers"] == str(inner)
    assert settings.log_level == "info", "an outer project's file is not merged in"


def test_the_user_config_is_not_read_again_as_a_project_config(tmp_path: Path):
    # ORC_HOME is ~/.orc and orc runs in ~: ~/.orc/config.yaml is the user file, once.
    user_file = _write(tmp_path / ".orc" / "config.yaml", "port: 9300\n")
    settings = load_settings(environ={"ORC_HOME": str(tmp_path / ".orc")}, cwd=tmp_path)
    assert settings.port == 9300
    assert settings.sources["port"] == str(user_file)


def test_null_in_a_config_file_leaves_the_lower_layer(load, home: Path, work: Path):
    home_file = _write(home / "config.yaml", "port: 9001\n")
    _write(work / ".orc" / "config.yaml", "workers:\nlog_level: null\n")
    settings = load()
    assert (settings.port, settings.sources["port"]) == (9001, str(home_file))
    assert settings.sources["log_level"] == "default"


def test_empty_and_comment_only_config_files_set_nothing(load, home: Path, work: Path):
    _write(home / "config.yaml", "")
    _write(work / ".orc" / "config.yaml", "# nothing here\n")
    settings = load()
    assert all(source == "default" for name, source in settings.sources.items() if name != "home")


def test_config_file_values_of_every_type_are_parsed(load, home: Path):
    _write(
        home / "config.yaml",
        "port: 9000\nauth_enabled: false\nshutdown_timeout: 2.5\nlog_level: DEBUG\n"
        "base_url: https://orc.example.com/\nhost: 0.0.0.0\n",
    )
    settings = load()
    assert settings.port == 9000
    assert settings.auth_enabled is False
    assert settings.shutdown_timeout == 2.5
    assert settings.log_level == "debug"
    assert settings.base_url == "https://orc.example.com"
    assert settings.host == "0.0.0.0"


def test_empty_env_var_is_treated_as_unset(load, work: Path):
    project_file = _write(work / ".orc" / "config.yaml", "workers: 4\n")
    settings = load(ORC_WORKERS="", ORC_LOG_LEVEL="", DATABASE_URL="")
    assert (settings.workers, settings.sources["workers"]) == (4, str(project_file))
    assert (settings.log_level, settings.sources["log_level"]) == ("info", "default")
    assert settings.sources["database_url"] == "default"


def test_empty_orc_home_is_treated_as_unset(tmp_path: Path, work: Path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    settings = load_settings(environ={"ORC_HOME": ""}, cwd=work)
    assert settings.home == (tmp_path / "user" / ".orc").absolute()


def test_replace_records_command_line_values(load):
    settings = load().replace(port=9999, host="0.0.0.0")
    assert (settings.port, settings.sources["port"]) == (9999, "command line")
    assert settings.sources["host"] == "command line"
    assert settings.sources["log_level"] == "default"


# Secrets and _FILE variants


@pytest.mark.parametrize(
    ("env", "name", "value"),
    [
        ("ORC_AUTH_TOKEN", "auth_token", TOKEN),
        ("ORC_OIDC_CLIENT_SECRET", "oidc_client_secret", SECRET),
        ("DATABASE_URL", "database_url", f"postgres://orc:{SECRET}@db:5432/orc"),
    ],
)
def test_file_variant_of_a_secret_is_read_and_stripped(load, tmp_path, env, name, value):
    path = _write(tmp_path / "secret.txt", f"  {value}\n\n")
    settings = load(**{f"{env}_FILE": str(path)})
    assert getattr(settings, name) == value
    assert settings.sources[name] == f"env {env}_FILE"


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.secret], ids=lambda s: s.name)
def test_both_a_secret_and_its_file_variant_is_an_error(load, tmp_path, setting):
    path = _write(tmp_path / "secret.txt", SECRET)
    message = _error(load, **{setting.env: SECRET, setting.file_env: str(path)})
    assert setting.env in message
    assert setting.file_env in message
    assert SECRET not in message


def test_empty_secret_next_to_its_file_variant_is_not_a_conflict(load, tmp_path):
    path = _write(tmp_path / "token", TOKEN)
    settings = load(ORC_AUTH_TOKEN="", ORC_AUTH_TOKEN_FILE=str(path))
    assert settings.auth_token == TOKEN


def test_unreadable_secret_file_names_the_file_variable(load, tmp_path):
    missing = tmp_path / "no-such-secret"
    message = _error(load, ORC_AUTH_TOKEN_FILE=str(missing))
    assert "ORC_AUTH_TOKEN_FILE" in message
    assert str(missing) in message


def test_non_secret_settings_have_no_file_variant(load, tmp_path):
    path = _write(tmp_path / "port", "9000")
    settings = load(ORC_PORT_FILE=str(path))
    assert (settings.port, settings.sources["port"]) == (8080, "default")


def test_setting_a_token_turns_auth_on(load):
    settings = load(ORC_AUTH_TOKEN=TOKEN)
    assert settings.auth_enabled is True
    assert settings.auth_token == TOKEN
    assert settings.sources["auth_enabled"] == "env ORC_AUTH_TOKEN"


def test_a_token_file_turns_auth_on(load, tmp_path):
    path = _write(tmp_path / "token", TOKEN + "\n")
    settings = load(ORC_AUTH_TOKEN_FILE=str(path))
    assert settings.auth_enabled is True
    assert settings.sources["auth_enabled"] == "env ORC_AUTH_TOKEN_FILE"


@pytest.mark.parametrize("raw", ["true", "1", "yes", "ON", " True "])
def test_auth_enabled_accepts_true_spellings(load, raw):
    assert load(ORC_AUTH_ENABLED=raw).auth_enabled is True


@pytest.mark.parametrize("raw", ["false", "0", "no", "Off"])
def test_auth_enabled_accepts_false_spellings(load, raw):
    assert load(ORC_AUTH_ENABLED=raw).auth_enabled is False


# Redaction


def test_display_value_hides_secrets_and_the_database_password(load):
    settings = load(
        ORC_AUTH_TOKEN=TOKEN,
        ORC_OIDC_CLIENT_SECRET=SECRET,
        DATABASE_URL=f"postgres://orc:{SECRET}@db.example:5432/orc?sslmode=require",
    )
    assert settings.display_value("auth_token") == "********"
    assert settings.display_value("oidc_client_secret") == "********"
    assert settings.display_value("database_url") == (
        "postgres://orc:***@db.example:5432/orc?sslmode=require"
    )
    assert settings.display_value("oidc_issuer") == "-"
    assert settings.display_value("port") == "8080"
    for setting in SETTINGS:
        shown = settings.display_value(setting.name)
        assert SECRET not in shown
        assert TOKEN not in shown


def test_display_value_keeps_a_database_url_without_password(load, tmp_path):
    url = f"sqlite:///{tmp_path / 'orc.db'}"
    assert load(DATABASE_URL=url).display_value("database_url") == url
    url = "postgresql://orc@db:5432/orc"
    assert load(DATABASE_URL=url).display_value("database_url") == url


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_config_show_never_prints_secrets(home, work, monkeypatch, as_json):
    monkeypatch.chdir(work)
    env = {
        "ORC_HOME": str(home),
        "ORC_AUTH_TOKEN": TOKEN,
        "ORC_OIDC_CLIENT_SECRET": SECRET,
        "DATABASE_URL": f"postgres://orc:{SECRET}@db.example:5432/orc",
    }
    for name in ("ORC_AUTH_TOKEN_FILE", "ORC_OIDC_CLIENT_SECRET_FILE", "DATABASE_URL_FILE"):
        monkeypatch.delenv(name, raising=False)
    args = ["config", "show", "--json"] if as_json else ["config", "show"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    assert TOKEN not in result.output
    assert "********" in result.output
    assert "orc:***@db.example" in result.output
    if as_json:
        assert set(json.loads(result.output)) == {s.name for s in SETTINGS}


# Invalid values: one line naming the variable and the fix


@pytest.mark.parametrize(
    ("env", "raw", "reason"),
    [
        ("ORC_PORT", "abc", "not a number"),
        ("ORC_PORT", "70000", "out of range"),
        ("ORC_PORT", "0", "out of range"),
        ("ORC_LOG_LEVEL", "loud", "not one of"),
        ("ORC_LOG_FORMAT", "xml", "not one of"),
        ("ORC_AUTH_TYPE", "ldap", "not one of"),
        ("ORC_AUTH_ENABLED", "maybe", "not a boolean"),
        ("ORC_WORKERS", "0", "at least 1"),
        ("ORC_WORKERS", "two", "not a whole number"),
        ("ORC_WORKER_THREADS", "1.5", "not a whole number"),
        ("ORC_SHUTDOWN_TIMEOUT", "-1", "greater than 0"),
        ("ORC_DISK_WARN_MB", "lots", "not a whole number"),
        ("ORC_BASE_URL", "ftp://orc.example.com", "http"),
        ("ORC_BASE_URL", "orc.example.com", "http"),
        ("ORC_OIDC_ISSUER", "issuer", "http"),
        ("ORC_HOST", "my host", "not a host"),
    ],
)
def test_invalid_env_value_names_the_variable_and_the_fix(load, env, raw, reason):
    setting = next(s for s in SETTINGS if s.env == env)
    message = _error(load, **{env: raw})
    assert message.startswith(f"{env}=")
    assert repr(raw) in message
    assert reason in message
    assert setting.fix in message


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"mysql://orc:{SECRET}@db/orc", "must start with sqlite://, postgres:// or postgresql://"),
        ("orc.db", "must start with"),
        (f"postgres://orc:{SECRET}@:5432/orc", "needs a host"),
        (f"postgres://orc:{SECRET}@/orc", "needs a host"),
        (f"postgres://orc:{SECRET}@db:5432", "needs a database name"),
        (f"postgresql://orc:{SECRET}@db:5432/", "needs a database name"),
        (f"postgres://orc:{SECRET}@db:port/orc", "port"),
        ("sqlite://", "needs a file path"),
        ("sqlite://:memory:", "needs a file path"),
        (f"postgres://orc:{SECRET}@db/orc?ssl=true", "unknown option 'ssl'"),
        (f"postgres://orc:{SECRET}@db/orc?password={SECRET}", "unknown option 'password'"),
        (f"postgres://orc:{SECRET}@db/orc?sslmode=on", "sslmode must be one of"),
        (f"postgres://orc:{SECRET}@db/orc?sslmode=", "sslmode must be one of"),
        (f"postgres://orc:{SECRET}@db/orc?connect_timeout=soon", "connect_timeout"),
        (f"postgres://orc:{SECRET}@db/orc?max_size=-1", "max_size"),
    ],
)
def test_malformed_database_url_is_rejected_without_showing_it(load, url, reason):
    message = _error(load, DATABASE_URL=url)
    assert message.startswith("DATABASE_URL=(hidden) is invalid")
    assert reason in message
    assert SETTINGS_BY_NAME["database_url"].fix in message
    assert SECRET not in message


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///var/lib/orc/orc.db",
        "sqlite:////var/lib/orc/orc.db",
        "postgres://orc:pw@db:5432/orc",
        "postgresql://orc:pw@db/orc",
        "postgres://db/orc",
        "postgres://orc:pw@[::1]:5432/orc",
        "postgres://orc:p%40ss@db:5432/orc",
        *(f"postgres://orc@db/orc?sslmode={mode}" for mode in SSL_MODES),
        "postgres://orc@db/orc?sslmode=require&application_name=orc-api"
        "&connect_timeout=10&min_size=2&max_size=20",
    ],
)
def test_valid_database_urls_are_accepted(load, url):
    settings = load(DATABASE_URL=url)
    assert settings.database_url == url
    assert settings.sources["database_url"] == "env DATABASE_URL"


def test_every_postgres_url_option_is_accepted(load):
    values = {"sslmode": "disable", "application_name": "orc"}
    query = "&".join(f"{key}={values.get(key, '3')}" for key in POSTGRES_URL_OPTIONS)
    assert load(DATABASE_URL=f"postgres://db/orc?{query}").database_url.endswith(query)


def test_invalid_value_in_a_config_file_names_the_key_and_the_file(load, work):
    path = _write(work / ".orc" / "config.yaml", "workers: abc\n")
    message = _error(load)
    assert "workers" in message
    assert str(path) in message
    assert "'abc'" in message
    assert SETTINGS_BY_NAME["workers"].fix in message


def test_invalid_secret_in_a_config_file_is_hidden(load, home):
    _write(home / "config.yaml", f"database_url: mysql://orc:{SECRET}@db/orc\n")
    message = _error(load)
    assert "database_url" in message
    assert "(hidden)" in message
    assert SECRET not in message


def test_unknown_yaml_key_is_an_error(load, work):
    path = _write(work / ".orc" / "config.yaml", "prot: 9000\n")
    message = _error(load)
    assert "'prot'" in message
    assert str(path) in message
    assert "port" in message.split("known settings:")[1]


def test_orc_home_cannot_be_set_in_a_config_file(load, home):
    _write(home / "config.yaml", "home: /elsewhere\n")
    assert "'home'" in _error(load)


def test_invalid_yaml_names_the_file_and_line(load, work):
    path = _write(work / ".orc" / "config.yaml", "port: 9000\nlog_level: [debug\n")
    message = _error(load)
    assert str(path) in message
    assert "not valid YAML" in message
    assert "line" in message


@pytest.mark.parametrize("text", ["- port\n- 9000\n", "just a string\n", "42\n"])
def test_yaml_that_is_not_a_mapping_is_an_error(load, home, text):
    path = _write(home / "config.yaml", text)
    message = _error(load)
    assert str(path) in message
    assert "mapping" in message


def test_unreadable_config_file_is_an_error(load, home):
    # Tests run as root, so chmod 000 would not stop reads; a directory cannot be read as a file.
    path = home / "config.yaml"
    path.mkdir(parents=True)
    message = _error(load)
    assert str(path) in message
    assert "cannot be read" in message


def test_a_secret_value_never_appears_in_an_error(load, tmp_path, home):
    _write(home / "config.yaml", "port: 0\n")
    path = _write(tmp_path / "token", TOKEN)
    cases = [
        {"DATABASE_URL": f"postgres://orc:{SECRET}@db/orc?sslmode=maybe"},
        {"DATABASE_URL": f"mysql://orc:{SECRET}@db/orc"},
        {"ORC_AUTH_TOKEN": TOKEN, "ORC_AUTH_TOKEN_FILE": str(path)},
        {"ORC_OIDC_CLIENT_SECRET": SECRET, "ORC_OIDC_CLIENT_SECRET_FILE": str(path)},
        {"ORC_AUTH_TOKEN": TOKEN, "ORC_PORT": "abc"},
    ]
    for env in cases:
        message = _error(load, **env)
        assert SECRET not in message
        assert TOKEN not in message


# Start-up refusals (orc.auth.policy)

OIDC = {
    "ORC_AUTH_TYPE": "oidc",
    "ORC_OIDC_ISSUER": "https://idp.example.com",
    "ORC_OIDC_CLIENT_ID": "orc",
    "ORC_OIDC_CLIENT_SECRET": SECRET,
}


def test_policy_accepts_the_defaults_and_a_long_token(load):
    check_auth_policy(load())
    check_auth_policy(load(ORC_AUTH_TOKEN=TOKEN, ORC_HOST="0.0.0.0"))


def test_policy_accepts_complete_oidc_and_oidc_turns_auth_on(load):
    settings = load(**OIDC, ORC_HOST="0.0.0.0", ORC_BASE_URL="https://orc.example.com")
    assert settings.auth_enabled and settings.sources["auth_enabled"] == "env ORC_AUTH_TYPE"
    check_auth_policy(settings)
    # Plain http is fine for an issuer on this machine (development, tests).
    check_auth_policy(load(**{**OIDC, "ORC_OIDC_ISSUER": "http://127.0.0.1:5556"}))


def test_oidc_lists_read_from_env_and_yaml(load, home):
    settings = load(ORC_OIDC_ALLOWED_DOMAINS=" Example.com, example.org ,")
    assert settings.oidc_allowed_domains == ("example.com", "example.org")
    _write(home / "config.yaml", "oidc_admin_emails: [Boss@Example.com, b@x.io]\n")
    assert load().oidc_admin_emails == ("boss@example.com", "b@x.io")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ORC_HOST": "0.0.0.0"}, "set ORC_AUTH_TOKEN"),
        ({"ORC_AUTH_ENABLED": "true"}, "needs ORC_AUTH_TOKEN"),
        ({"ORC_AUTH_TOKEN": "short-token-abc"}, "shorter than 32"),
        ({"ORC_AUTH_TYPE": "oidc", "ORC_AUTH_TOKEN": TOKEN}, "needs ORC_OIDC_ISSUER"),
        ({**OIDC, "ORC_OIDC_CLIENT_ID": ""}, "needs ORC_OIDC_CLIENT_ID"),
        ({**OIDC, "ORC_OIDC_CLIENT_SECRET": ""}, "needs ORC_OIDC_CLIENT_SECRET"),
        ({**OIDC, "ORC_OIDC_ISSUER": "http://idp.example.com"}, "must use https://"),
        ({**OIDC, "ORC_HOST": "0.0.0.0"}, "set it to the URL users open"),
        ({"ORC_AUTH_TOKEN": TOKEN, "ORC_METRICS_TOKEN": "short-token-abc"}, "ORC_METRICS_TOKEN"),
        # Long enough, but guessable: one letter repeated, a prefix and a repeat, a sequence.
        ({"ORC_AUTH_TOKEN": "a" * 32}, "ORC_AUTH_TOKEN is too easy to guess"),
        ({"ORC_AUTH_TOKEN": "tok-" + "x" * 40}, "too easy to guess"),
        ({"ORC_AUTH_TOKEN": "abcdefghijklmnopqrstuvwxyz0123456789"}, "too easy to guess"),
        ({"ORC_AUTH_TOKEN": "change-me-change-me-change-me-123"}, "too easy to guess"),
        ({"ORC_AUTH_TOKEN": TOKEN, "ORC_METRICS_TOKEN": "m" * 64}, "ORC_METRICS_TOKEN"),
        ({"ORC_AUTH_TOKEN": TOKEN, "ORC_SECRET_KEY": "k" * 40}, "ORC_SECRET_KEY"),
        ({"ORC_AUTH_TOKEN": "x" * 500}, "too easy to guess"),
    ],
)
def test_policy_refuses_unsafe_configurations_in_one_line(load, env, expected):
    with pytest.raises(ConfigError) as info:
        check_auth_policy(load(**env))
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert "short-token-abc" not in message
    assert TOKEN not in message


# orc init's template


def test_init_template_lists_every_non_secret_setting_and_loads_cleanly(load, work):
    text = config_template()
    for setting in SETTINGS:
        if setting.env_only or setting.from_operator_only:
            assert f"# {setting.name}:" not in text
            continue
        assert f"# {setting.name}:" in text
        assert setting.env in text
    _write(work / ".orc" / "config.yaml", text)
    settings = load()
    assert all(source == "default" for name, source in settings.sources.items() if name != "home")


# Fixes found in review


def test_an_empty_secret_file_is_an_error_not_auth_off(load, tmp_path):
    empty = _write(tmp_path / "token", "  \n")
    message = _error(load, ORC_AUTH_TOKEN_FILE=str(empty))
    assert "ORC_AUTH_TOKEN_FILE" in message and "is empty" in message


def test_a_blank_token_in_a_config_file_is_an_error(load, home):
    _write(home / "config.yaml", 'auth_token: "   "\n')
    message = _error(load)
    assert "auth_token" in message and "ORC_AUTH_TOKEN" in message


def test_auth_explicitly_off_with_a_token_is_a_conflict(load):
    message = _error(load, ORC_AUTH_ENABLED="false", ORC_AUTH_TOKEN=TOKEN)
    assert "ORC_AUTH_ENABLED" in message and "ORC_AUTH_TOKEN" in message
    assert TOKEN not in message


def test_default_database_url_is_a_clean_absolute_sqlite_url(load, home):
    assert load().database_url == f"sqlite://{home.absolute()}/orc.db"
    assert not load().database_url.startswith("sqlite:////")


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite:///tmp/", "sqlite://:memory:"])
def test_sqlite_url_without_a_file_is_rejected(load, url):
    assert "DATABASE_URL" in _error(load, DATABASE_URL=url)


def test_booleans_are_shown_as_users_write_them(load):
    assert load().display_value("auth_enabled") == "false"
    assert "# backup_gzip: false" in config_template()


def test_relative_orc_home_is_relative_to_the_project_directory(work):
    settings = load_settings(environ={"ORC_HOME": "data", "HOME": str(work)}, cwd=work)
    assert settings.home == work / "data"


def _k8s_example_token() -> str:
    """The auth token of the example Kubernetes Secret orc ships, wherever it lives."""
    for path in sorted((Path(__file__).resolve().parent.parent / "deploy").rglob("*.y*ml")):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") == "Secret":
                return str(document["stringData"]["auth-token"])
    raise AssertionError("no example Secret under deploy/: point this test at it")


@pytest.mark.parametrize(
    "placeholder",
    [
        _k8s_example_token(),
        "your-secure-token-here",  # the deployment spec's .env example
        " Replace-With-The-Output-Of-Orc-Token-Generate ",
    ],
)
def test_policy_refuses_every_placeholder_orc_ships(load, placeholder):
    with pytest.raises(ConfigError) as info:
        check_auth_policy(load(ORC_AUTH_TOKEN=placeholder))
    message = str(info.value)
    assert "placeholder" in message and "orc token generate" in message


@pytest.mark.parametrize(
    "token",
    [
        generate_token(),
        secrets.token_hex(16),  # openssl rand -hex 16
        secrets.token_hex(32),
        base64.b64encode(secrets.token_bytes(32)).decode(),  # openssl rand -base64 32
        secrets.token_urlsafe(256),
    ],
    ids=["orc-token-generate", "hex-16", "hex-32", "base64-32", "urlsafe-256"],
)
def test_policy_accepts_random_tokens_of_every_usual_shape(load, token):
    check_auth_policy(load(ORC_AUTH_TOKEN=token, ORC_METRICS_TOKEN=generate_token()))


OPERATOR_ONLY = [s for s in SETTINGS if s.from_operator_only]


def test_who_gets_in_where_data_goes_and_where_orc_listens_are_operator_only():
    names = {s.name for s in OPERATOR_ONLY}
    assert names >= {
        "host",
        "port",
        "base_url",
        "auth_enabled",
        "auth_type",
        "auth_token",
        "oidc_issuer",
        "oidc_client_id",
        "oidc_client_secret",
        "oidc_allowed_domains",
        "oidc_admin_emails",
        "oidc_create_users",
        "secret_key",
        "metrics_token",
        "metrics_public_loopback",
        "proxies_count",
        "database_url",
        "backup_dir",
        "litestream_enabled",
        "litestream_config",
    }


@pytest.mark.parametrize("setting", OPERATOR_ONLY, ids=lambda s: s.name)
def test_a_projects_file_cannot_set_an_operator_setting(load, home, work, setting):
    """A checkout someone else wrote must not open the server (host: 0.0.0.0 and a known
    token), make admins, or send the data elsewhere."""
    value = {"host": "0.0.0.0", "auth_token": TOKEN, "port": 9000}.get(setting.name, "x")
    path = _write(work / ".orc" / "config.yaml", f"{setting.name}: {json.dumps(value)}\n")
    message = _error(load)
    assert f"{setting.name!r} in {path} cannot be set by a project's file" in message
    assert setting.env in message and str(home / "config.yaml") in message
    assert TOKEN not in message


def test_the_operators_file_and_the_environment_still_set_them(load, home, work):
    _write(home / "config.yaml", "host: 0.0.0.0\noidc_admin_emails: [boss@example.com]\n")
    _write(work / ".orc" / "config.yaml", "workers: 2\n")
    settings = load(ORC_AUTH_TOKEN=TOKEN)
    assert (settings.host, settings.oidc_admin_emails) == ("0.0.0.0", ("boss@example.com",))
    assert settings.workers == 2 and settings.auth_token == TOKEN
