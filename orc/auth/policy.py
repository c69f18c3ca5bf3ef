"""Refuse unsafe or incomplete auth configurations at start-up, saying how to fix them."""

from __future__ import annotations

from orc.config import ConfigError, Settings, is_loopback

MIN_TOKEN_LENGTH = 32


def check_auth_policy(settings: Settings) -> None:
    """Raise ConfigError when the server would start unprotected or half-configured."""
    if settings.auth_enabled and settings.auth_type == "oidc":
        raise ConfigError(
            "ORC_AUTH_TYPE=oidc is not available in this version of orc yet; "
            "use token auth: set ORC_AUTH_TOKEN (orc token generate makes one)"
        )
    if settings.auth_enabled and not settings.auth_token:
        raise ConfigError(
            "ORC_AUTH_ENABLED=true with ORC_AUTH_TYPE=token needs ORC_AUTH_TOKEN "
            "(or ORC_AUTH_TOKEN_FILE); run orc token generate to make one"
        )
    if settings.auth_token and len(settings.auth_token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"ORC_AUTH_TOKEN is shorter than {MIN_TOKEN_LENGTH} characters; "
            "run orc token generate for a strong one"
        )
    if not settings.auth_enabled and not is_loopback(settings.host):
        raise ConfigError(
            f"refusing to listen on {settings.host} without authentication; "
            "set ORC_AUTH_TOKEN (orc token generate makes one) or listen on 127.0.0.1"
        )
