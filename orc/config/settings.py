"""``Settings``: the effective configuration of one process, made once by ``load_settings``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from orc.config.parsers import format_value
from orc.config.registry import SETTINGS, SETTINGS_BY_NAME
from orc.db.url import DatabaseUrl
from orc.errors import EXIT_USAGE, OrcError


class ConfigError(OrcError):
    """A setting is invalid; the message is one line naming it and the fix."""

    code = "config_error"
    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Settings:
    """The effective configuration, with where each value came from."""

    home: Path
    database_url: str
    host: str
    port: int
    workers: int
    base_url: str
    auth_enabled: bool
    auth_type: str
    auth_token: str | None
    oidc_issuer: str | None
    oidc_client_id: str | None
    oidc_client_secret: str | None
    oidc_allowed_domains: tuple[str, ...]
    oidc_admin_emails: tuple[str, ...]
    oidc_create_users: bool
    secret_key: str | None
    metrics_token: str | None
    metrics_public_loopback: bool
    log_level: str
    log_format: str
    access_log_probes: bool
    shutdown_timeout: float
    worker_threads: int
    disk_warn_mb: int
    disk_critical_mb: int
    proxies_count: int
    event_retention_days: int
    backup_dir: Path
    backup_enabled: bool
    backup_schedule: str
    backup_keep_daily: int
    backup_keep_weekly: int
    backup_keep_monthly: int
    backup_keep_pre_migration: int
    backup_check: str
    backup_gzip: bool
    litestream_enabled: bool
    litestream_config: Path
    anthropic_api_key: str | None
    claude_code_oauth_token: str | None
    agent_model: str | None
    agent_phase_models: tuple[tuple[str, str], ...]
    agent_permission_mode: str
    agent_allowed_tools: tuple[str, ...]
    agent_max_iterations: int
    agent_phase_timeout: float
    agent_idle_timeout: float
    max_concurrent_runs: int
    task_budget_usd: float | None
    review_max_rounds: int
    git_author: str
    transcript_retention_days: int
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @cached_property
    def database(self) -> DatabaseUrl:
        """``database_url`` parsed once, for everything that connects or looks at the file."""
        return DatabaseUrl(self.database_url)

    @property
    def queue_path(self) -> Path:
        return self.home / "queue.db"

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values changed (recorded as coming from the command line)."""
        values = {s.name: getattr(self, s.name) for s in SETTINGS}
        values.update(changes)
        sources = dict(self.sources)
        sources.update({name: "command line" for name in changes})
        return Settings(**values, sources=sources)

    def display_value(self, name: str) -> str:
        """The value for humans: secrets redacted, database passwords hidden."""
        value = getattr(self, name)
        if value is None:
            return "-"
        if name == "database_url":
            return self.database.redacted
        if SETTINGS_BY_NAME[name].secret:
            return "********"
        return format_value(value)
