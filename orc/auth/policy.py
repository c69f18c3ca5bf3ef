"""Refuse unsafe or incomplete auth configurations at start-up, saying how to fix them."""

from __future__ import annotations

from urllib.parse import urlsplit

from orc.auth.strength import weakness
from orc.config import ConfigError, Settings, is_loopback

OIDC_REQUIRED = (
    ("oidc_issuer", "ORC_OIDC_ISSUER", "the issuer URL of your identity provider"),
    ("oidc_client_id", "ORC_OIDC_CLIENT_ID", "the client ID registered for orc"),
    ("oidc_client_secret", "ORC_OIDC_CLIENT_SECRET", "the client secret (or _FILE)"),
)


def _check_oidc(settings: Settings) -> None:
    for name, variable, what in OIDC_REQUIRED:
        if not getattr(settings, name):
            raise ConfigError(f"ORC_AUTH_TYPE=oidc needs {variable}: set it to {what}")
    issuer = settings.oidc_issuer or ""
    if urlsplit(issuer).scheme != "https" and not is_loopback(urlsplit(issuer).hostname or ""):
        raise ConfigError(
            f"ORC_OIDC_ISSUER={issuer} must use https:// (plain http only on localhost)"
        )
    base_host = urlsplit(settings.base_url).hostname or ""
    if not is_loopback(settings.host) and is_loopback(base_host):
        raise ConfigError(
            f"ORC_BASE_URL={settings.base_url} is where the identity provider sends users back; "
            "set it to the URL users open, e.g. https://orc.example.com"
        )


def _check_secrets(settings: Settings) -> None:
    """Refuse server secrets that are short, guessable or copied from an example."""
    for variable, value in (
        ("ORC_AUTH_TOKEN", settings.auth_token),
        ("ORC_METRICS_TOKEN", settings.metrics_token),
        ("ORC_SECRET_KEY", settings.secret_key),
    ):
        problem = weakness(value) if value else None
        if problem is not None:
            raise ConfigError(f"{variable} {problem}; run orc token generate for a strong one")


def check_auth_policy(settings: Settings) -> None:
    """Raise ConfigError when the server would start unprotected or half-configured."""
    if settings.auth_enabled and settings.auth_type == "oidc":
        _check_oidc(settings)
    elif settings.auth_enabled and not settings.auth_token:
        raise ConfigError(
            "ORC_AUTH_ENABLED=true with ORC_AUTH_TYPE=token needs ORC_AUTH_TOKEN "
            "(or ORC_AUTH_TOKEN_FILE); run orc token generate to make one"
        )
    _check_secrets(settings)
    if not settings.auth_enabled and not is_loopback(settings.host):
        raise ConfigError(
            f"refusing to listen on {settings.host} without authentication; "
            "set ORC_AUTH_TOKEN (orc token generate makes one) or listen on 127.0.0.1"
        )
