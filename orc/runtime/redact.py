"""Secrets never reach a log line: a filter on the handler that writes them rewrites every record.

Every logger (orc's, Sanic's, Huey's, libraries') ends at the root handler, so one filter
there covers them all, at every level. It removes secrets by shape (bearer and basic
credentials, cookies, ``orc_pat_`` tokens, JWTs such as tickets and session cookies, secret
query parameters, passwords in URLs and JSON) and by value (the configured secrets), from the
message, the ``extra`` fields and the traceback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

from orc.config import SETTINGS, Settings

REDACTED = "[redacted]"
# Literal secrets shorter than this are not searched for (they would match ordinary words).
MIN_LITERAL_LENGTH = 8

_SENSITIVE_NAMES = (
    r"ticket|token|access_token|id_token|refresh_token|code|state|nonce|code_verifier"
    r"|password|passwd|secret|client_secret|api_key|apikey|key|session|orc_session|orc_login"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # ?ticket=…&code=… in URLs and request lines (Sanic logs the whole URL of a failure).
    (re.compile(rf"(?i)([?&;](?:{_SENSITIVE_NAMES})=)[^&;#\s'\"<>]*"), rf"\1{REDACTED}"),
    # Authorization: Bearer …, Basic …
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9\-._~+/]+=*"), rf"\1\2{REDACTED}"),
    # Cookie and Set-Cookie headers, whole (every cookie in them).
    (re.compile(r"(?i)(\b(?:set-)?cookie['\"]?\s*[:=]\s*['\"]?)[^'\"\n]+"), rf"\1{REDACTED}"),
    # orc's own cookies wherever they appear.
    (re.compile(r"(?i)\b(orc_session|orc_login)=[^;\s'\",]+"), rf"\1={REDACTED}"),
    # Personal access tokens by their prefix.
    (re.compile(r"orc_pat_[A-Za-z0-9_\-]+"), f"orc_pat_{REDACTED}"),
    # JWTs: WebSocket tickets, session cookies, ID tokens.
    (re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"), REDACTED),
    # user:password@ in URLs (database, proxies).
    (re.compile(r"(://[^/\s:@'\"]+:)[^@\s/'\"]+@"), rf"\1{REDACTED}@"),
    # "token": "…" in JSON and token='…' in reprs.
    (
        re.compile(rf"(?i)(['\"](?:{_SENSITIVE_NAMES})['\"]\s*[:=]\s*['\"])[^'\"]*"),
        rf"\1{REDACTED}",
    ),
)
_STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _maybe_secret(text: str) -> bool:
    """False only where no pattern above can match: each needs "=" or ":", or one of these
    words. Most strings (an access line's path, method, address...) are then left at once."""
    if "=" in text or ":" in text or "eyJ" in text:
        return True
    lower = text.lower()
    return "bearer" in lower or "basic" in lower or "orc_pat_" in lower


def secret_values(settings: Settings) -> list[str]:
    """The configured secrets (and the database password) to remove wherever they appear."""
    values = [getattr(settings, s.name) for s in SETTINGS if s.secret and s.name != "home"]
    password = urlsplit(settings.database_url).password
    if password:
        values += [password, unquote(password)]
    return [str(v) for v in values if v]


class RedactSecrets(logging.Filter):
    """Rewrites a record so that no secret it carries is written (always lets it through)."""

    def __init__(self, literals: Iterable[str] = ()) -> None:
        super().__init__()
        unique = {v for v in literals if len(v) >= MIN_LITERAL_LENGTH}
        self._literals = sorted(unique, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for literal in self._literals:
            text = text.replace(literal, REDACTED)
        if not _maybe_secret(text):
            return text
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def is_clean(self, text: str) -> bool:
        """Whether ``text`` holds nothing that ``redact`` would change (it may say False for
        text that would come out the same: then the caller redacts the slow way)."""
        if _maybe_secret(text):
            return False
        # A plain loop: all() over a generator (or any() over map) costs 2.5x as much, and
        # this runs for every access line.
        for literal in self._literals:  # noqa: SIM110
            if literal in text:
                return False
        return True

    def redact_parts(self, message: str, fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """A line's message and extra fields with every string redacted; one check of them all
        first, so that a line with nothing that could be a secret (most) is left at once."""
        texts = [message, *(v for v in fields.values() if isinstance(v, str))]
        joined = "\n".join(texts)
        if not _maybe_secret(joined) and not any(s in joined for s in self._literals):
            return message, fields
        redact = self.redact
        return redact(message), {
            k: redact(v) if isinstance(v, str) else v for k, v in fields.items()
        }

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format
            message = str(record.msg)
        record.msg, record.args = self.redact(message), None
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, name, self.redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True
