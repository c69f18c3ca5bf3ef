"""Tier 2: a shared bearer token, compared in constant time."""

from __future__ import annotations

import hmac
import secrets


def generate_token() -> str:
    """A new random token (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def token_matches(presented: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())
