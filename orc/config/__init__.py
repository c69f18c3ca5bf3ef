"""One settings object: built-in defaults < ORC_HOME/config.yaml < <project>/.orc/config.yaml < env.

Every setting is declared once in ``SETTINGS`` with its environment variable, default, parser
and documentation; ``load_settings`` validates all of them and raises ``ConfigError`` with one
line that names the setting and says how to fix it.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from orc.errors import EXIT_USAGE, OrcError

PROJECT_DIR_NAME = ".orc"
# Set by `orc serve` for its children (not a user setting): where API workers share metrics.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONFIG_FILE_NAME = "config.yaml"


class ConfigError(OrcError):
    """A setting is invalid; the message is one line naming it and the fix."""

    code = "config_error"
    exit_code = EXIT_USAGE


def _parse_port(raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise ValueError("not a number") from None
    if not 1 <= port <= 65535:
        raise ValueError("out of range")
    return port


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("not a whole number") from None
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _non_negative_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("not a whole number") from None
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _parse_cron(raw: str) -> str:
    from orc.config.cron import parse_cron

    return parse_cron(raw).expression


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("not a number") from None
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("not a boolean")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        lowered = raw.strip().lower()
        if lowered not in choices:
            raise ValueError("not one of " + ", ".join(choices))
        return lowered

    return parse


def parse_host(raw: str) -> str:
    host = raw.strip()
    if not host or any(c.isspace() for c in host) or "/" in host:
        raise ValueError("not a host name or IP address")
    return host


def _parse_http_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http:// or https:// URL")
    return raw.strip().rstrip("/")


def _parse_text(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("is empty")
    return value


def _parse_lower_list(raw: str) -> tuple[str, ...]:
    items = tuple(item.strip().lower() for item in raw.split(",") if item.strip())
    if any(any(c.isspace() for c in item) for item in items):
        raise ValueError("items must not contain spaces")
    return items


def _parse_secret_key(raw: str) -> str:
    value = raw.strip()
    if len(value) < 32:
        raise ValueError("shorter than 32 characters")
    return value


SQLITE_SCHEMES = ("sqlite",)
POSTGRES_SCHEMES = ("postgres", "postgresql")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
POSTGRES_URL_OPTIONS = ("sslmode", "application_name", "connect_timeout", "min_size", "max_size")


def _parse_database_url(raw: str) -> str:
    url = raw.strip()
    parts = urlsplit(url)
    if parts.scheme in SQLITE_SCHEMES:
        path = (parts.netloc + parts.path) if parts.netloc else parts.path
        if not path.strip("/") or path.endswith("/") or path == ":memory:":
            raise ValueError("an SQLite URL needs a file path, e.g. sqlite:///home/me/.orc/orc.db")
        return url
    if parts.scheme in POSTGRES_SCHEMES:
        if not parts.hostname:
            raise ValueError("a PostgreSQL URL needs a host, e.g. postgres://user@host:5432/orc")
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ValueError("its port is not a number between 1 and 65535") from None
        if not parts.path.strip("/"):
            raise ValueError("a PostgreSQL URL needs a database name after the host")
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key not in POSTGRES_URL_OPTIONS:
                raise ValueError(
                    f"unknown option {key!r} (known: {', '.join(POSTGRES_URL_OPTIONS)})"
                )
            if key == "sslmode" and value not in SSL_MODES:
                raise ValueError(f"sslmode must be one of {', '.join(SSL_MODES)}")
            if key in ("connect_timeout", "min_size", "max_size") and not value.isdigit():
                raise ValueError(f"{key} must be a whole number")
        return url
    raise ValueError("must start with sqlite://, postgres:// or postgresql://")


@dataclass(frozen=True)
class Setting:
    """One setting: where it is read from, how it is parsed, what it means."""

    name: str
    env: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    fix: str
    secret: bool = False
    env_only: bool = False

    @property
    def file_env(self) -> str:
        """The ``_FILE`` variant of a secret (Docker and Kubernetes secrets)."""
        return self.env + "_FILE"


def _default_home(environ: Mapping[str, str]) -> Path:
    user_home = environ.get("HOME")
    return (Path(user_home) if user_home else Path.home()) / PROJECT_DIR_NAME


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "home",
        "ORC_HOME",
        Path,
        None,
        "Directory for orc's data: orc.db, queue.db, backups/, config.yaml.",
        "set ORC_HOME to a writable directory",
        env_only=True,
    ),
    Setting(
        "database_url",
        "DATABASE_URL",
        _parse_database_url,
        None,
        "Database connection string: sqlite:///path/orc.db or "
        "postgres://user:password@host:5432/db?sslmode=disable. "
        "Default: SQLite at ORC_HOME/orc.db.",
        "use sqlite:///path/to/orc.db or postgres://user:password@host:5432/dbname",
        secret=True,
    ),
    Setting(
        "host",
        "ORC_HOST",
        parse_host,
        "127.0.0.1",
        "Listen address of the API.",
        "use a host name or IP address such as 127.0.0.1 or 0.0.0.0",
    ),
    Setting(
        "port",
        "ORC_PORT",
        _parse_port,
        8080,
        "Listen port of the API.",
        "use a whole number between 1 and 65535",
    ),
    Setting(
        "workers",
        "ORC_WORKERS",
        _positive_int,
        1,
        "Number of API worker processes.",
        "use a whole number of at least 1",
    ),
    Setting(
        "base_url",
        "ORC_BASE_URL",
        _parse_http_url,
        "http://localhost:8080",
        "Public URL of orc, used for callbacks and secure cookies.",
        "use the URL users open, e.g. https://orc.example.com",
    ),
    Setting(
        "auth_enabled",
        "ORC_AUTH_ENABLED",
        _parse_bool,
        False,
        "Require authentication on the API (turned on by setting ORC_AUTH_TOKEN).",
        "use true or false",
    ),
    Setting(
        "auth_type",
        "ORC_AUTH_TYPE",
        _choice("token", "oidc"),
        "token",
        "Authentication type: token or oidc.",
        "use token or oidc",
    ),
    Setting(
        "auth_token",
        "ORC_AUTH_TOKEN",
        _parse_text,
        None,
        "Bearer token for the API; at least 32 characters (orc token generate).",
        "set a random token of at least 32 characters",
        secret=True,
    ),
    Setting(
        "oidc_issuer",
        "ORC_OIDC_ISSUER",
        _parse_http_url,
        None,
        "OIDC issuer URL.",
        "use the issuer's https:// URL",
    ),
    Setting(
        "oidc_client_id",
        "ORC_OIDC_CLIENT_ID",
        _parse_text,
        None,
        "OIDC client ID.",
        "copy the client ID from your identity provider",
    ),
    Setting(
        "oidc_client_secret",
        "ORC_OIDC_CLIENT_SECRET",
        _parse_text,
        None,
        "OIDC client secret.",
        "copy the client secret from your identity provider",
        secret=True,
    ),
    Setting(
        "oidc_allowed_domains",
        "ORC_OIDC_ALLOWED_DOMAINS",
        _parse_lower_list,
        (),
        "Comma-separated email domains allowed to sign in with OIDC (empty: any).",
        "use domains separated by commas, e.g. example.com,example.org",
    ),
    Setting(
        "oidc_admin_emails",
        "ORC_OIDC_ADMIN_EMAILS",
        _parse_lower_list,
        (),
        "Comma-separated emails that are made admin when they sign in.",
        "use emails separated by commas",
    ),
    Setting(
        "oidc_create_users",
        "ORC_OIDC_CREATE_USERS",
        _parse_bool,
        True,
        "Create unknown OIDC users on first sign-in (role member); false refuses them.",
        "use true or false",
    ),
    Setting(
        "secret_key",
        "ORC_SECRET_KEY",
        _parse_secret_key,
        None,
        "Key that signs session cookies and WebSocket tickets (at least 32 characters). "
        "Default: one generated once and kept in ORC_HOME/secret_key (mode 0600); "
        "set it when several replicas must accept each other's sessions.",
        "set a random value of at least 32 characters (orc token generate makes one)",
        secret=True,
    ),
    Setting(
        "metrics_token",
        "ORC_METRICS_TOKEN",
        _parse_text,
        None,
        "Bearer token that may read /api/metrics (besides admins) when auth is on.",
        "set a random token of at least 32 characters (orc token generate makes one)",
        secret=True,
    ),
    Setting(
        "metrics_public_loopback",
        "ORC_METRICS_PUBLIC_LOOPBACK",
        _parse_bool,
        False,
        "Let requests from loopback read /api/metrics without auth when auth is on.",
        "use true or false",
    ),
    Setting(
        "log_level",
        "ORC_LOG_LEVEL",
        _choice("debug", "info", "warning", "error", "critical"),
        "info",
        "Log level.",
        "use debug, info, warning, error or critical",
    ),
    Setting(
        "log_format",
        "ORC_LOG_FORMAT",
        _choice("json", "text"),
        "json",
        "Log format: json (one object per line) or text.",
        "use json or text",
    ),
    Setting(
        "shutdown_timeout",
        "ORC_SHUTDOWN_TIMEOUT",
        _positive_float,
        5.0,
        "Seconds a stopping server waits for open requests and jobs before it exits.",
        "use a number of seconds greater than 0",
    ),
    Setting(
        "worker_threads",
        "ORC_WORKER_THREADS",
        _positive_int,
        2,
        "Threads of the job worker (Huey consumer).",
        "use a whole number of at least 1",
    ),
    Setting(
        "disk_warn_mb",
        "ORC_DISK_WARN_MB",
        _positive_int,
        500,
        "Readiness reports a disk warning when ORC_HOME has less free space (MiB).",
        "use a whole number of MiB",
    ),
    Setting(
        "proxies_count",
        "ORC_PROXIES_COUNT",
        _non_negative_int,
        0,
        "Reverse proxies in front of orc whose X-Forwarded-For and X-Forwarded-Proto it trusts "
        "for the client's address and scheme: 1 behind Caddy, 0 (default) ignores those headers, "
        "which any client could forge.",
        "use 0, or the number of proxies between clients and orc (1 behind Caddy)",
    ),
    Setting(
        "event_retention_days",
        "ORC_EVENT_RETENTION_DAYS",
        _positive_int,
        7,
        "Days the event outbox keeps events for clients that reconnect with since.",
        "use a whole number of days",
    ),
    Setting(
        "backup_dir",
        "ORC_BACKUP_DIR",
        Path,
        None,
        "Directory for backups and their manifests. Default: ORC_HOME/backups.",
        "set ORC_BACKUP_DIR to a writable directory",
    ),
    Setting(
        "backup_enabled",
        "ORC_BACKUP_ENABLED",
        _parse_bool,
        True,
        "Take scheduled backups in the job worker.",
        "use true or false",
    ),
    Setting(
        "backup_schedule",
        "ORC_BACKUP_SCHEDULE",
        _parse_cron,
        "0 3 * * *",
        "When the worker takes scheduled backups: a cron expression in UTC.",
        "use five cron fields, e.g. '0 3 * * *' for 03:00 UTC daily",
    ),
    Setting(
        "backup_keep_daily",
        "ORC_BACKUP_KEEP_DAILY",
        _non_negative_int,
        7,
        "Prune keeps the newest backup of each of this many days.",
        "use a whole number (0 keeps none by day)",
    ),
    Setting(
        "backup_keep_weekly",
        "ORC_BACKUP_KEEP_WEEKLY",
        _non_negative_int,
        4,
        "Prune keeps the newest backup of each of this many ISO weeks.",
        "use a whole number (0 keeps none by week)",
    ),
    Setting(
        "backup_keep_monthly",
        "ORC_BACKUP_KEEP_MONTHLY",
        _non_negative_int,
        6,
        "Prune keeps the newest backup of each of this many months.",
        "use a whole number (0 keeps none by month)",
    ),
    Setting(
        "backup_keep_pre_migration",
        "ORC_BACKUP_KEEP_PRE_MIGRATION",
        _positive_int,
        3,
        "Pre-migration and pre-restore backups kept (newest first), each kind on its own.",
        "use a whole number of at least 1",
    ),
    Setting(
        "backup_check",
        "ORC_BACKUP_CHECK",
        _choice("quick", "full"),
        "quick",
        "Check of each new SQLite backup: quick (PRAGMA quick_check) or full (integrity_check).",
        "use quick or full",
    ),
    Setting(
        "backup_gzip",
        "ORC_BACKUP_GZIP",
        _parse_bool,
        False,
        "Compress backups with gzip (smaller, slower).",
        "use true or false",
    ),
    Setting(
        "litestream_enabled",
        "ORC_LITESTREAM_ENABLED",
        _parse_bool,
        False,
        "Litestream replicates orc.db: the worker checks replication every minute.",
        "use true or false",
    ),
    Setting(
        "litestream_config",
        "ORC_LITESTREAM_CONFIG",
        Path,
        Path("/etc/litestream.yml"),
        "Path of Litestream's config file (its dbs and replicas).",
        "set ORC_LITESTREAM_CONFIG to the path of litestream.yml",
    ),
)

SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The effective configuration, with where each value came from."""

    home: Path
    database_url: str
    host: str
    port: int
    workers: int
    base_url: str
    auth_enabled: bool
    auth_type: str
    auth_token: str | None
    oidc_issuer: str | None
    oidc_client_id: str | None
    oidc_client_secret: str | None
    oidc_allowed_domains: tuple[str, ...]
    oidc_admin_emails: tuple[str, ...]
    oidc_create_users: bool
    secret_key: str | None
    metrics_token: str | None
    metrics_public_loopback: bool
    log_level: str
    log_format: str
    shutdown_timeout: float
    worker_threads: int
    disk_warn_mb: int
    proxies_count: int
    event_retention_days: int
    backup_dir: Path
    backup_enabled: bool
    backup_schedule: str
    backup_keep_daily: int
    backup_keep_weekly: int
    backup_keep_monthly: int
    backup_keep_pre_migration: int
    backup_check: str
    backup_gzip: bool
    litestream_enabled: bool
    litestream_config: Path
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def is_sqlite(self) -> bool:
        return urlsplit(self.database_url).scheme in SQLITE_SCHEMES

    @property
    def queue_path(self) -> Path:
        return self.home / "queue.db"

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values changed (recorded as coming from the command line)."""
        values = {s.name: getattr(self, s.name) for s in SETTINGS}
        values.update(changes)
        sources = dict(self.sources)
        sources.update({name: "command line" for name in changes})
        return Settings(**values, sources=sources)

    def display_value(self, name: str) -> str:
        """The value for humans: secrets redacted, database passwords hidden."""
        value = getattr(self, name)
        if value is None:
            return "-"
        if name == "database_url":
            return redact_url(value)
        if SETTINGS_BY_NAME[name].secret:
            return "********"
        return format_value(value)


def format_value(value: Any) -> str:
    """A value as a user would write it in YAML or the environment (true, not True)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(str(item) for item in value)
    return str(value)


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"config file {path} cannot be read ({exc.strerror}); "
            "make it a readable file or remove it"
        ) from None
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
        layers.append((str(project_config), _read_yaml(project_config)))

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


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
