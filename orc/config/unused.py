"""Settings that were set but change nothing: said once at start-up, so nobody wonders why."""

from __future__ import annotations

from orc.config.registry import SETTINGS
from orc.config.settings import Settings

OIDC_SETTINGS = tuple(s for s in SETTINGS if s.name.startswith("oidc_"))


def unused_settings_warnings(settings: Settings) -> list[str]:
    """One line per group of settings that the rest of the configuration makes inert."""
    if settings.auth_type == "oidc" and settings.auth_enabled:
        return []
    given = [s.env for s in OIDC_SETTINGS if settings.sources.get(s.name, "default") != "default"]
    if not given:
        return []
    why = (
        "ORC_AUTH_ENABLED=false"
        if settings.auth_type == "oidc"
        else f"ORC_AUTH_TYPE={settings.auth_type}"
    )
    return [
        f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} set but ignored: OIDC sign-in "
        f"is off ({why}); set ORC_AUTH_TYPE=oidc to use {'it' if len(given) == 1 else 'them'}"
    ]
