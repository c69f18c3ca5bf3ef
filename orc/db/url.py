"""Turn a DATABASE_URL into a Tortoise connection config.

We build the credentials ourselves instead of handing Tortoise the URL: Tortoise parses
``?ssl=false`` as ``bool("false") == True`` and knows nothing of libpq's ``sslmode``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from orc.config import POSTGRES_SCHEMES

SQLITE_PRAGMAS = {
    "journal_mode": "WAL",
    "busy_timeout": 5000,
    "synchronous": "NORMAL",
    "foreign_keys": "ON",
}
CONNECT_TIMEOUT_SECONDS = 5


def sqlite_path(database_url: str) -> str:
    """The file path of an sqlite:// URL (sqlite:///abs/path or sqlite://relative/path)."""
    parts = urlsplit(database_url)
    return unquote(parts.netloc + parts.path)


def is_sqlite_url(database_url: str) -> bool:
    """True for SQLite URLs (the config has already refused anything but SQLite or PostgreSQL)."""
    return urlsplit(database_url).scheme not in POSTGRES_SCHEMES


def connection_config(database_url: str) -> dict[str, Any]:
    """Tortoise's ``connections.default`` entry for this URL."""
    if is_sqlite_url(database_url):
        return {
            "engine": "tortoise.backends.sqlite",
            "credentials": {"file_path": sqlite_path(database_url), **SQLITE_PRAGMAS},
        }
    parts = urlsplit(database_url)
    options = dict(parse_qsl(parts.query))
    credentials: dict[str, Any] = {
        "host": parts.hostname,
        "port": parts.port or 5432,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "database": unquote(parts.path.lstrip("/")),
        "timeout": int(options.get("connect_timeout", CONNECT_TIMEOUT_SECONDS)),
        "minsize": int(options.get("min_size", 1)),
        "maxsize": int(options.get("max_size", 5)),
        # asyncpg understands libpq's sslmode names; "prefer" is libpq's default too.
        "ssl": options.get("sslmode", "prefer"),
    }
    if "application_name" in options:
        credentials["application_name"] = options["application_name"]
    return {"engine": "tortoise.backends.asyncpg", "credentials": credentials}


def tortoise_config(database_url: str) -> dict[str, Any]:
    """The full Tortoise config: one connection, orc's models and migrations."""
    return {
        "connections": {"default": connection_config(database_url)},
        "apps": {
            "orc": {
                "models": ["orc.db.models"],
                "default_connection": "default",
                "migrations": "orc.db.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def asyncpg_connect_args(database_url: str) -> dict[str, Any]:
    """Arguments for ``asyncpg.connect`` (a connection of our own, outside Tortoise's pool)."""
    creds = connection_config(database_url)["credentials"]
    keys = ("host", "port", "user", "password", "database", "ssl", "timeout")
    return {key: creds[key] for key in keys}
