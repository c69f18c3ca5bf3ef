"""Browser sessions: a signed cookie carrying a session id that the database can revoke."""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime, timedelta

from orc.auth.access_tokens import access_token_identity_by_id
from orc.auth.identity import Identity
from orc.auth.signing import sha256_hex, sign, verify
from orc.auth.token import server_token_credential
from orc.db.models import AuthSession, User
from orc.outbox.events import AUTH_REVOKED_EVENT, change_transaction, emit

COOKIE_NAME = "orc_session"
SESSION_HOURS = 24
SESSION_SECONDS = SESSION_HOURS * 3600
PURPOSE = "session"


def revocation_key(id_hash: str) -> str:
    """How a session is named in revocation events (a hash, never the id itself)."""
    return "session:" + id_hash


async def create_session(
    subject: str, role: str, user: User | None, credential: str | None = None
) -> str:
    """Store a new session; returns its id (to be signed into the cookie)."""
    session_id = secrets.token_urlsafe(32)
    await AuthSession.create(
        id_hash=sha256_hex(session_id),
        user=user,
        subject=subject,
        role=role,
        credential=credential,
        expires_at=datetime.now(UTC) + timedelta(seconds=SESSION_SECONDS),
    )
    return session_id


def cookie_value(session_id: str, key: str) -> str:
    """The signed cookie for a session."""
    return sign({"sid": session_id}, key, PURPOSE, SESSION_SECONDS)


def session_id_from_cookie(value: str, key: str) -> str | None:
    """The session id of a validly signed, unexpired cookie."""
    claims = verify(value, key, PURPOSE)
    session_id = claims.get("sid") if claims else None
    return session_id if isinstance(session_id, str) else None


def csrf_token(session_id: str, key: str) -> str:
    """The value a cookie-authenticated client sends in X-CSRF-Token (bound to the session)."""
    return hmac.new(key.encode(), b"csrf:" + session_id.encode(), "sha256").hexdigest()


async def session_identity(session_id: str, server_token: str | None) -> Identity | None:
    """The identity of a live session: not revoked, not expired, its user still there, and the
    token it was bought with (if any) still valid (``server_token`` is the current one)."""
    return await session_identity_by_hash(sha256_hex(session_id), server_token)


async def session_identity_by_hash(id_hash: str, server_token: str | None) -> Identity | None:
    """As ``session_identity``, for a session named by the hash of its id."""
    session = await AuthSession.get_or_none(id_hash=id_hash).select_related("user")
    if session is None or session.revoked_at is not None:
        return None
    if session.expires_at <= datetime.now(UTC):
        return None
    user = session.user
    role = user.role if user else session.role
    credential = session.credential or ""
    if credential.startswith("pat:"):
        token = credential.removeprefix("pat:")
        behind = (
            await access_token_identity_by_id(int(token), server_token) if token.isdigit() else None
        )
        if behind is None:
            return None  # the access token was revoked or expired: so is this session
        role = behind.role
    elif credential.startswith("token:") and (
        server_token is None or credential != server_token_credential(server_token)
    ):
        return None  # ORC_AUTH_TOKEN was rotated: sessions bought with the old one end
    return Identity(
        kind="session",
        subject=user.email if user else session.subject,
        role=role,
        user_id=user.id if user else None,
        revocation_key=revocation_key(id_hash),
        via_access_token=credential.startswith("pat:"),
        server_credential=credential if credential.startswith("token:") else None,
    )


async def revoke_session(session_id: str) -> bool:
    """Revoke a session and tell every API process to close its WebSockets."""
    id_hash = sha256_hex(session_id)
    async with change_transaction() as conn:
        changed = (
            await AuthSession.filter(id_hash=id_hash, revoked_at__isnull=True)
            .using_db(conn)
            .update(revoked_at=datetime.now(UTC))
        )
        if changed:
            await emit(conn, AUTH_REVOKED_EVENT, None, {"key": revocation_key(id_hash)})
    return bool(changed)


async def prune_sessions(now: datetime) -> int:
    """Delete sessions that expired or were revoked more than a day ago."""
    cutoff = now - timedelta(days=1)
    expired = await AuthSession.filter(expires_at__lt=now).delete()
    revoked = await AuthSession.filter(revoked_at__lt=cutoff).delete()
    return expired + revoked
