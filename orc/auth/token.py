"""Tier 2: a shared bearer token, compared in constant time."""

from __future__ import annotations

import hmac
import re
import secrets

from sanic import Request

# Probes must work without credentials; matched exactly, never by prefix.
EXEMPT_PATHS = frozenset({"/api/health", "/api/health/ready"})
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]{1,4096}=*")


def generate_token() -> str:
    """A new random token (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def bearer_token(request: Request) -> str | None:
    """The token of a well-formed ``Authorization: Bearer …`` header, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    # RFC 6750's b64token: anything else (spaces, controls, non-ASCII bytes) is not a token.
    if scheme.lower() != "bearer" or not B64TOKEN.fullmatch(value):
        return None
    return value


def token_matches(presented: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())
