"""The value parsers: text from the environment or YAML in, a typed value or ValueError out.

A ValueError's message says what is wrong with the value; the loader adds the setting's name
and its fix, so the user reads one line.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from orc.db.url import POSTGRES_SCHEMES, POSTGRES_URL_OPTIONS, SQLITE_SCHEMES, SSL_MODES

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_port(raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise ValueError("not a number") from None
    if not 1 <= port <= 65535:
        raise ValueError("out of range")
    return port


def positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("not a whole number") from None
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def non_negative_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("not a whole number") from None
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def cron_expression(raw: str) -> str:
    # Imported here: the cron module pulls in Huey, which most commands never need.
    from orc.config.cron import parse_cron

    return parse_cron(raw).expression


def positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("not a number") from None
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("not a boolean")


def choice(*choices: str) -> Callable[[str], str]:
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


def http_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http:// or https:// URL")
    return raw.strip().rstrip("/")


def text(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("is empty")
    return value


def lower_list(raw: str) -> tuple[str, ...]:
    items = tuple(item.strip().lower() for item in raw.split(",") if item.strip())
    if any(any(c.isspace() for c in item) for item in items):
        raise ValueError("items must not contain spaces")
    return items


def name_list(raw: str) -> tuple[str, ...]:
    """``Read,Write,Bash(git:*)``: comma-separated names, case kept (tool names)."""
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    if not items:
        raise ValueError("is empty")
    return items


def phase_models(raw: str) -> tuple[tuple[str, str], ...]:
    """``review=claude-opus-4-5,docs=claude-haiku-4-5``: a model for some phases."""
    pairs = []
    for item in (part.strip() for part in raw.split(",") if part.strip()):
        phase, sep, model = item.partition("=")
        if not sep or not phase.strip() or not model.strip():
            raise ValueError(f"{item!r} is not phase=model")
        pairs.append((phase.strip().lower(), model.strip()))
    return tuple(pairs)


def split_author(value: str) -> tuple[str, str]:
    """``Name <email>`` as (name, email); ValueError when it is not that."""
    name, sep, rest = value.strip().partition("<")
    email = rest.strip().removesuffix(">").strip()
    if not sep or not rest.strip().endswith(">") or not name.strip() or "@" not in email:
        raise ValueError("not in the form Name <email>")
    return name.strip(), email


def git_author(raw: str) -> str:
    """``Name <email>`` for the commits orc makes, spaced as git writes it."""
    name, email = split_author(raw)
    return f"{name} <{email}>"


# Claude Code's permission modes, as its CLI spells them.
PERMISSION_MODES = ("acceptEdits", "bypassPermissions", "default", "plan")


def permission_mode(raw: str) -> str:
    by_lower = {mode.lower(): mode for mode in PERMISSION_MODES}
    mode = by_lower.get(raw.strip().lower())
    if mode is None:
        raise ValueError("not one of " + ", ".join(PERMISSION_MODES))
    return mode


def secret_key(raw: str) -> str:
    value = raw.strip()
    if len(value) < 32:
        raise ValueError("shorter than 32 characters")
    return value


def database_url(raw: str) -> str:
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


def format_value(value: Any) -> str:
    """A value as a user would write it in YAML or the environment (true, not True)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(str(item) for item in value)
    return str(value)


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
