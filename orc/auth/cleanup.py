"""Forget what auth no longer needs: ended sessions and abandoned sign-ins."""

from __future__ import annotations

from datetime import datetime, timedelta

from orc.auth.sessions import prune_sessions
from orc.db.models import OidcLogin

# A sign-in not finished within this time is abandoned (its callback is refused anyway).
LOGIN_LIFETIME = timedelta(minutes=10)
# Pending sign-ins kept at most: /auth/login needs no credentials, so its rows are bounded.
MAX_PENDING_LOGINS = 10_000


async def prune_auth_state(now: datetime) -> dict[str, int]:
    """Delete expired or long-revoked sessions and abandoned sign-ins; return the counts."""
    sessions = await prune_sessions(now)
    logins = await OidcLogin.filter(created_at__lt=now - LOGIN_LIFETIME).delete()
    return {"sessions": sessions, "logins": logins}


async def room_for_login(now: datetime, limit: int = MAX_PENDING_LOGINS) -> bool:
    """True when one more pending sign-in may be stored (abandoned ones are dropped first)."""
    if await OidcLogin.all().count() < limit:
        return True
    await OidcLogin.filter(created_at__lt=now - LOGIN_LIFETIME).delete()
    return await OidcLogin.all().count() < limit
