"""Forget what auth no longer needs: ended sessions and abandoned sign-ins."""

from __future__ import annotations

from datetime import datetime, timedelta

from orc.auth.sessions import prune_sessions
from orc.db.models import OidcLogin

# A sign-in not finished within this time is abandoned (its callback is refused anyway).
LOGIN_LIFETIME = timedelta(minutes=10)


async def prune_auth_state(now: datetime) -> dict[str, int]:
    """Delete expired or long-revoked sessions and abandoned sign-ins; return the counts."""
    sessions = await prune_sessions(now)
    logins = await OidcLogin.filter(created_at__lt=now - LOGIN_LIFETIME).delete()
    return {"sessions": sessions, "logins": logins}
