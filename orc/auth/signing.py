"""Our own signed tokens (session cookies, WebSocket tickets): HS256 JWTs made with pyjwt."""

from __future__ import annotations

import hashlib
import time
from typing import Any

ALGORITHM = "HS256"
# pyjwt is imported in sign() and verify(): with cryptography it is ~9 MiB, and neither the job
# worker (which imports this module for sha256_hex) nor an API without auth ever signs anything.


def sha256_hex(value: str) -> str:
    """What we store instead of a secret: its SHA-256 (the secrets are random, not passwords)."""
    return hashlib.sha256(value.encode()).hexdigest()


def sign(claims: dict[str, Any], key: str, purpose: str, ttl_seconds: float) -> str:
    """A JWT for ``purpose`` that expires after ``ttl_seconds``."""
    now = int(time.time())
    payload = {**claims, "typ": purpose, "iat": now, "exp": now + int(ttl_seconds)}
    import jwt

    return jwt.encode(payload, key, algorithm=ALGORITHM)


def verify(token: str, key: str, purpose: str) -> dict[str, Any] | None:
    """The claims of a valid, unexpired token made for ``purpose``; None otherwise."""
    import jwt

    try:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=[ALGORITHM], options={"require": ["exp", "iat", "typ"]}
        )
    except jwt.PyJWTError:
        return None
    return claims if claims.get("typ") == purpose else None
