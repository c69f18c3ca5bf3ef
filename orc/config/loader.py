"""The loader: built-in defaults < ORC_HOME/config.yaml < <project>/.orc/config.yaml < env.

A project's file is written by whoever wrote the checkout: it may not set the settings that
decide who gets in, where data goes or where orc listens (``Setting.from_operator_only``).

Secrets may come from a file named by their ``_FILE`` variable (Docker and Kubernetes secrets).
``load_settings`` validates every setting and raises ``ConfigError`` on the first bad one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orc.config.parsers import format_value
from orc.config.registry import SETTINGS, SETTINGS_BY_NAME, Setting
from orc.config.settings import ConfigError, Settings

PROJECT_DIR_NAME = ".orc"
CONFIG_FILE_NAME = "config.yaml"


def _default_home(environ: Mapping[str, str]) -> Path:
    user_home = environ.get("HOME")
    return (Path(user_home) if user_home else Path.home()) / PROJECT_DIR_NAME


def _read_yaml(path: Path, operator_file: Path | None = None) -> dict[str, Any]:
    """A config file's mapping; ``operator_file`` is given for a project's file, which may not
    set operator-only settings (the message says where they belong)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"config file {path} cannot be read ({exc.strerror}); "
            "make it a readable file or remove it"
        ) from None
    import yaml  # here: a process whose settings come from the environment never needs it

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"config file {path} is not valid YAML{where}; fix or remove it"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must be a mapping; "
            "write one `name: value` per line, e.g. port: 8080"
        )
    for key in data:
        setting = SETTINGS_BY_NAME.get(str(key))
        if setting is not None and setting.env_only:
            raise ConfigError(
                f"{key!r} in {path} cannot be set in a config file; "
                f"set the {setting.env} environment variable instead"
            )
        if setting is None:
            known = ", ".join(s.name for s in SETTINGS if not s.env_only)
            raise ConfigError(f"unknown setting {key!r} in {path}; known settings: {known}")
        if operator_file is not None and setting.from_operator_only:
            raise ConfigError(
                f"{key!r} in {path} cannot be set by a project's file: it decides who gets in, "
                f"where data goes, where orc listens or what the agent may do; "
                f"set {setting.env} in the environment "
                f"or {key} in {operator_file} (the operator's file)"
            )
    return data


def find_project_config(start: Path, home: Path) -> Path | None:
    """The nearest ``.orc/config.yaml`` at or above ``start`` that is not ORC_HOME's own."""
    home_config = (home / CONFIG_FILE_NAME).resolve()
    for directory in (start, *start.parents):
        candidate = directory / PROJECT_DIR_NAME / CONFIG_FILE_NAME
        if candidate.exists() and candidate.resolve() != home_config:
            return candidate
    return None


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    return value if value and value.strip() else None


def _read_secret_file(setting: Setting, path_text: str) -> str:
    try:
        value = Path(path_text).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"{setting.file_env}: cannot read {path_text} ({exc.strerror}); "
            f"point it at a readable file or set {setting.env} instead"
        ) from None
    if not value:
        raise ConfigError(
            f"{setting.file_env}: {path_text} is empty; put the secret in it "
            f"or unset {setting.file_env}"
        )
    return value


def _raw_value(
    setting: Setting, environ: Mapping[str, str], layers: list[tuple[str, dict[str, Any]]]
) -> tuple[Any, str] | None:
    """The winning raw value of one setting and a description of its source."""
    direct = _env(environ, setting.env)
    file_path = _env(environ, setting.file_env) if setting.secret else None
    if direct is not None and file_path is not None:
        raise ConfigError(f"set only one of {setting.env} and {setting.file_env}")
    if file_path is not None:
        return _read_secret_file(setting, file_path), f"env {setting.file_env}"
    if direct is not None:
        return direct, f"env {setting.env}"
    for source, data in reversed(layers):
        if setting.name in data and data[setting.name] is not None:
            return data[setting.name], source
    return None


def _parse(setting: Setting, raw: Any, source: str) -> Any:
    try:
        return setting.parse(format_value(raw))
    except ValueError as exc:
        shown = "(hidden)" if setting.secret else repr(str(raw))
        if source.startswith("env "):
            where = source.removeprefix("env ") + "=" + shown
        else:
            where = f"{setting.name}={shown} in {source} ({setting.env})"
        raise ConfigError(f"{where} is invalid: {exc}; {setting.fix}") from None


def load_settings(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError on the first bad one."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    home = Path(_env(environ, "ORC_HOME") or _default_home(environ)).expanduser()
    if not home.is_absolute():
        home = cwd / home
    sources: dict[str, str] = {"home": "env ORC_HOME" if _env(environ, "ORC_HOME") else "default"}

    layers: list[tuple[str, dict[str, Any]]] = []
    home_config = home / CONFIG_FILE_NAME
    if home_config.exists():
        layers.append((str(home_config), _read_yaml(home_config)))
    project_config = find_project_config(cwd, home)
    if project_config is not None:
        layers.append((str(project_config), _read_yaml(project_config, home_config)))

    values: dict[str, Any] = {"home": home.resolve() if home.exists() else home.absolute()}
    for setting in SETTINGS:
        if setting.env_only:
            continue
        found = _raw_value(setting, environ, layers)
        if found is None:
            values[setting.name] = setting.default
            sources[setting.name] = "default"
            continue
        raw, source = found
        values[setting.name] = _parse(setting, raw, source)
        sources[setting.name] = source

    if values["database_url"] is None:
        values["database_url"] = f"sqlite://{values['home'] / 'orc.db'}"
    if values["backup_dir"] is None:
        values["backup_dir"] = values["home"] / "backups"
    elif not values["backup_dir"].is_absolute():
        values["backup_dir"] = cwd / values["backup_dir"]
    if values["auth_token"] and not values["auth_enabled"]:
        if sources["auth_enabled"] != "default":
            raise ConfigError(
                f"ORC_AUTH_ENABLED=false ({sources['auth_enabled']}) conflicts with ORC_AUTH_TOKEN "
                f"({sources['auth_token']}); unset one of them"
            )
        # Setting a token is how users turn token auth on (spec: "ORC_AUTH_TOKEN set -> auth on").
        values["auth_enabled"] = True
        sources["auth_enabled"] = sources["auth_token"]
    if values["auth_type"] == "oidc" and sources["auth_enabled"] == "default":
        # Choosing OIDC is choosing to require sign-in.
        values["auth_enabled"] = True
        sources["auth_enabled"] = sources["auth_type"]
    return Settings(**values, sources=sources)
