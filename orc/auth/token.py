"""Tier 2: a shared bearer token, compared in constant time."""

from __future__ import annotations

import hmac
import secrets

from orc.auth.signing import sha256_hex


def generate_token() -> str:
    """A new random token (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def server_token_credential(token: str) -> str:
    """How a session or an access token records that it was bought with the server token
    (a fingerprint, never the token itself): rotating ORC_AUTH_TOKEN ends what it bought."""
    return "token:" + sha256_hex("orc-server-token:" + token)[:32]


def token_matches(presented: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())
