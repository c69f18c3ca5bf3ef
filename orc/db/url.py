"""``DatabaseUrl``: a DATABASE_URL parsed once into what each consumer needs.

We build the credentials ourselves instead of handing Tortoise the URL: Tortoise parses
``?ssl=false`` as ``bool("false") == True`` and knows nothing of libpq's ``sslmode``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

SQLITE_SCHEMES = ("sqlite",)
POSTGRES_SCHEMES = ("postgres", "postgresql")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
POSTGRES_URL_OPTIONS = ("sslmode", "application_name", "connect_timeout", "min_size", "max_size")

SQLITE_PRAGMAS = {
    "journal_mode": "WAL",
    "busy_timeout": 5000,
    "synchronous": "NORMAL",
    "foreign_keys": "ON",
}
CONNECT_TIMEOUT_SECONDS = 5
ASYNCPG_CONNECT_KEYS = ("host", "port", "user", "password", "database", "ssl", "timeout")


@dataclass(frozen=True)
class DatabaseUrl:
    """A validated SQLite or PostgreSQL URL; ``str()`` and ``repr()`` hide its password."""

    url: str = field(repr=False)
    is_sqlite: bool = field(init=False)
    redacted: str = field(init=False)
    # A plain dict (not a mapping proxy) so that Settings holding it can be pickled.
    _credentials: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        sqlite = parts.scheme not in POSTGRES_SCHEMES
        credentials = (
            {"file_path": unquote(parts.netloc + parts.path), **SQLITE_PRAGMAS}
            if sqlite
            else _postgres_credentials(self.url)
        )
        object.__setattr__(self, "is_sqlite", sqlite)
        object.__setattr__(self, "redacted", _redact(self.url))
        object.__setattr__(self, "_credentials", credentials)

    @classmethod
    def of(cls, database: DatabaseUrl | str) -> DatabaseUrl:
        """Accept either form, so tools and tests may pass a plain URL string."""
        return database if isinstance(database, DatabaseUrl) else cls(database)

    def __str__(self) -> str:
        return self.redacted

    @property
    def sqlite_path(self) -> Path:
        """The database file (sqlite:///abs/path or sqlite://relative/path)."""
        if not self.is_sqlite:
            raise ValueError(f"{self.redacted} is not an SQLite URL")
        return Path(self._credentials["file_path"])

    def connection_config(self) -> dict[str, Any]:
        """Tortoise's ``connections.default`` entry (a fresh copy: Tortoise may change it)."""
        # Tortoise's own engines with cancel-safe transactions (see those modules).
        engine = "orc.db.sqlite_engine" if self.is_sqlite else "orc.db.asyncpg_engine"
        return {"engine": engine, "credentials": dict(self._credentials)}

    def tortoise_config(self) -> dict[str, Any]:
        """The full Tortoise config: one connection, orc's models and migrations."""
        return {
            "connections": {"default": self.connection_config()},
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

    def asyncpg_connect_args(self) -> dict[str, Any]:
        """Arguments for ``asyncpg.connect`` (a connection of our own, outside Tortoise's pool)."""
        return {key: self._credentials[key] for key in ASYNCPG_CONNECT_KEYS}


def _postgres_credentials(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
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
    return credentials


def _redact(url: str) -> str:
    """The URL with its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
