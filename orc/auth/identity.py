"""Who a caller is: a user, a token, or the local owner, with a role."""

from __future__ import annotations

from dataclasses import dataclass

from orc.auth.roles import at_least


@dataclass(frozen=True)
class Identity:
    """An authenticated caller.

    ``kind`` says how it proved itself (local, token, session, pat, id_token, ticket);
    ``subject`` is what its tasks are recorded as created by; ``revocation_key`` names the
    credential so that revoking it can close this caller's WebSockets.
    """

    kind: str
    subject: str
    role: str
    user_id: int | None = None
    revocation_key: str | None = None
    # Made with an access token (directly or through a session bought with one): such a caller
    # may not mint more tokens, or a leaked short-lived token could outlive its revocation.
    via_access_token: bool = False
    # Holds the server token (directly or through a session bought with it): what it mints
    # records this fingerprint and dies when ORC_AUTH_TOKEN is rotated.
    server_credential: str | None = None

    def can(self, minimum_role: str) -> bool:
        return at_least(self.role, minimum_role)


# Tier 2's server token acts as admin.
SERVER_TOKEN_IDENTITY = Identity(kind="token", subject="admin-token", role="admin")

# Tier 1: no auth, loopback only. Whoever can reach the port owns the machine anyway.
LOCAL_OWNER = Identity(kind="local", subject="local", role="owner")
