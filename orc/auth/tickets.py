"""Short-lived, single-use tickets that let a browser open a WebSocket.

A browser cannot set headers on a WebSocket; it gets a ticket from ``POST /api/ws/ticket``
(authenticated like any request) and opens ``/api/ws?ticket=…`` within 30 seconds. The ticket
names the credential it came from, which must still be valid when the socket opens.
Single use is remembered per API process: with --workers N a stolen ticket could open at most
N sockets within its 30 seconds, each still bound to a live credential.
"""

from __future__ import annotations

import secrets
import time

from orc.auth.access_tokens import access_token_identity_by_id
from orc.auth.identity import Identity
from orc.auth.sessions import session_identity_by_hash
from orc.auth.signing import sign, verify

PURPOSE = "ws"
TICKET_SECONDS = 30


def issue_ticket(identity: Identity, key: str) -> str:
    claims = {
        "sub": identity.subject,
        "role": identity.role,
        "kind": identity.kind,
        "uid": identity.user_id,
        "cred": identity.revocation_key,
        "jti": secrets.token_urlsafe(12),
    }
    return sign(claims, key, PURPOSE, TICKET_SECONDS)


class TicketBook:
    """Remembers the tickets this process has redeemed until they expire (single use)."""

    def __init__(self) -> None:
        self._used: dict[str, float] = {}

    def redeem(self, ticket: str, key: str) -> dict[str, object] | None:
        claims = verify(ticket, key, PURPOSE)
        if claims is None:
            return None
        now = time.time()
        self._used = {jti: exp for jti, exp in self._used.items() if exp > now}
        jti = str(claims.get("jti", ""))
        if not jti or jti in self._used:
            return None
        self._used[jti] = float(claims["exp"])
        return claims


async def ticket_identity(claims: dict[str, object], server_token: str | None) -> Identity | None:
    """The identity a redeemed ticket stands for, re-checked against its credential."""
    credential = claims.get("cred")
    if isinstance(credential, str) and credential.startswith("session:"):
        return await session_identity_by_hash(credential.removeprefix("session:"), server_token)
    if isinstance(credential, str) and credential.startswith("pat:"):
        token_id = credential.removeprefix("pat:")
        if not token_id.isdigit():
            return None
        return await access_token_identity_by_id(int(token_id), server_token)
    user_id = claims.get("uid")
    return Identity(
        kind=str(claims.get("kind")),
        subject=str(claims.get("sub")),
        role=str(claims.get("role")),
        user_id=user_id if isinstance(user_id, int) else None,
    )
