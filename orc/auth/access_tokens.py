"""Personal access tokens (``orc_pat_…``): shown once, stored hashed, expiring, revocable."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from orc.auth.identity import Identity
from orc.auth.roles import lower_of
from orc.auth.signing import sha256_hex
from orc.auth.token import server_token_credential
from orc.db.models import AccessToken, User
from orc.errors import EXIT_USAGE, OrcError
from orc.outbox.events import AUTH_REVOKED_EVENT, change_transaction, emit

PREFIX = "orc_pat_"
# The longest lifetime a token may be given over the API (and by `orc token create`, whose
# operator alone may also ask for "never": they hold the database anyway).
MAX_LIFETIME_DAYS = 365
DEFAULT_LIFETIME_DAYS = 90
# Writing last_used_at on every request would turn reads into writes; once a minute is enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenNotFound(OrcError):
    """No token with that id or name."""

    status = 404
    code = "token_not_found"
    exit_code = EXIT_USAGE

    def __init__(self, reference: str) -> None:
        super().__init__(f"no token {reference!r}; see orc token list")


@dataclass(frozen=True)
class NewToken:
    """A token just made: the secret is here once and never again."""

    record: AccessToken
    secret: str


def looks_like_access_token(value: str) -> bool:
    return value.startswith(PREFIX)


def revocation_key(token_id: int) -> str:
    return f"pat:{token_id}"


async def create_access_token(
    name: str,
    role: str,
    user: User | None,
    expires_in: timedelta | None,
    minted_with: str | None = None,
) -> NewToken:
    """Make a token; its role is capped by its user's role when it has one.

    ``expires_in`` None means never (only `orc token create` offers that); ``minted_with``
    is the server-token fingerprint of a caller that holds the server token.
    """
    secret = PREFIX + secrets.token_urlsafe(32)
    record = await AccessToken.create(
        name=name,
        token_hash=sha256_hex(secret),
        user=user,
        role=lower_of(role, user.role) if user else role,
        expires_at=datetime.now(UTC) + expires_in if expires_in else None,
        minted_with=minted_with,
    )
    return NewToken(record=record, secret=secret)


def token_subject(token: AccessToken, user: User | None) -> str:
    """Whom the token acts as: its user, or the token itself (by id: two tokens with one
    name are two callers, and neither owns the other's tasks)."""
    return user.email if user else f"token:{token.name}#{token.id}"


async def access_token_identity(secret: str, server_token: str | None) -> Identity | None:
    """The identity behind a presented token, if it is valid now (``server_token`` is the
    current ORC_AUTH_TOKEN: tokens minted with an older one are not)."""
    token = await AccessToken.get_or_none(token_hash=sha256_hex(secret)).select_related("user")
    return await _identity(token, server_token)


async def access_token_identity_by_id(token_id: int, server_token: str | None) -> Identity | None:
    """As ``access_token_identity``, for a token named by its id (a ticket's credential)."""
    token = await AccessToken.get_or_none(id=token_id).select_related("user")
    return await _identity(token, server_token)


def _minted_with_a_former_server_token(token: AccessToken, server_token: str | None) -> bool:
    if token.minted_with is None:
        return False
    return server_token is None or token.minted_with != server_token_credential(server_token)


async def _identity(token: AccessToken | None, server_token: str | None) -> Identity | None:
    now = datetime.now(UTC)
    if token is None or token.revoked_at is not None:
        return None
    if token.expires_at is not None and token.expires_at <= now:
        return None
    if _minted_with_a_former_server_token(token, server_token):
        return None  # ORC_AUTH_TOKEN was rotated (or removed): what it minted ends with it
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        await AccessToken.filter(id=token.id).update(last_used_at=now)
    user = token.user
    return Identity(
        kind="pat",
        subject=token_subject(token, user),
        # A user demoted after making the token takes the token down with them.
        role=lower_of(token.role, user.role) if user else token.role,
        user_id=user.id if user else None,
        revocation_key=revocation_key(token.id),
        via_access_token=True,
    )


async def list_access_tokens(user_id: int | None = None) -> list[AccessToken]:
    """All tokens, or one user's, newest first."""
    query = AccessToken.all().select_related("user").order_by("-id")
    if user_id is not None:
        query = query.filter(user_id=user_id)
    return await query


async def find_access_token(reference: str) -> AccessToken:
    """A token by id or by name (the newest with that name)."""
    query = AccessToken.all().select_related("user")
    token = await (
        query.filter(id=int(reference)).first()
        if reference.isdigit()
        else query.filter(name=reference).order_by("-id").first()
    )
    if token is None:
        raise TokenNotFound(reference)
    return token


async def revoke_access_token(token: AccessToken) -> bool:
    """Revoke a token and close the WebSockets it opened; False if it was already revoked."""
    async with change_transaction() as conn:
        changed = (
            await AccessToken.filter(id=token.id, revoked_at__isnull=True)
            .using_db(conn)
            .update(revoked_at=datetime.now(UTC))
        )
        if changed:
            await emit(conn, AUTH_REVOKED_EVENT, None, {"key": revocation_key(token.id)})
    return bool(changed)


def token_state(token: AccessToken, now: datetime) -> str:
    """active, expired or revoked."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


def describe_access_token(token: AccessToken) -> dict[str, object]:
    """The public view of a token (never its secret or hash)."""

    def stamp(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": token.id,
        "name": token.name,
        "role": token.role,
        "user": token.user.email if token.user else None,
        "state": token_state(token, datetime.now(UTC)),
        "created_at": stamp(token.created_at),
        "expires_at": stamp(token.expires_at),
        "last_used_at": stamp(token.last_used_at),
        "revoked_at": stamp(token.revoked_at),
    }
