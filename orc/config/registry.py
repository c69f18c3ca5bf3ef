"""The registry: every setting declared once with its variable, parser, default and meaning."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orc.config import parsers

# Set by `orc serve` for its children (not a user setting): where API workers share metrics.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class Setting:
    """One setting: where it is read from, how it is parsed, what it means."""

    name: str
    env: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    fix: str
    secret: bool = False
    env_only: bool = False
    # Decides who gets in, where data goes, where orc listens or what the agent may do: the
    # operator's to set
    # (environment, ORC_HOME/config.yaml, flags), never a project's checked-in file.
    operator_only: bool = False

    @property
    def from_operator_only(self) -> bool:
        """True when a project's ``.orc/config.yaml`` may not set this (every secret too)."""
        return self.operator_only or self.secret

    @property
    def file_env(self) -> str:
        """The ``_FILE`` variant of a secret (Docker and Kubernetes secrets)."""
        return self.env + "_FILE"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "home",
        "ORC_HOME",
        Path,
        None,
        "Directory for orc's data: orc.db, queue.db, backups/, config.yaml.",
        "set ORC_HOME to a writable directory",
        env_only=True,
    ),
    Setting(
        "database_url",
        "DATABASE_URL",
        parsers.database_url,
        None,
        "Database connection string: sqlite:///path/orc.db or "
        "postgres://user:password@host:5432/db?sslmode=disable. "
        "Default: SQLite at ORC_HOME/orc.db.",
        "use sqlite:///path/to/orc.db or postgres://user:password@host:5432/dbname",
        secret=True,
    ),
    Setting(
        "host",
        "ORC_HOST",
        parsers.parse_host,
        "127.0.0.1",
        "Listen address of the API.",
        "use a host name or IP address such as 127.0.0.1 or 0.0.0.0",
        operator_only=True,
    ),
    Setting(
        "port",
        "ORC_PORT",
        parsers.parse_port,
        8080,
        "Listen port of the API.",
        "use a whole number between 1 and 65535",
        operator_only=True,
    ),
    Setting(
        "workers",
        "ORC_WORKERS",
        parsers.positive_int,
        1,
        "Number of API worker processes.",
        "use a whole number of at least 1",
    ),
    Setting(
        "base_url",
        "ORC_BASE_URL",
        parsers.http_url,
        "http://localhost:8080",
        "Public URL of orc, used for callbacks and secure cookies.",
        "use the URL users open, e.g. https://orc.example.com",
        operator_only=True,
    ),
    Setting(
        "auth_enabled",
        "ORC_AUTH_ENABLED",
        parsers.parse_bool,
        False,
        "Require authentication on the API (turned on by setting ORC_AUTH_TOKEN).",
        "use true or false",
        operator_only=True,
    ),
    Setting(
        "auth_type",
        "ORC_AUTH_TYPE",
        parsers.choice("token", "oidc"),
        "token",
        "Authentication type: token or oidc.",
        "use token or oidc",
        operator_only=True,
    ),
    Setting(
        "auth_token",
        "ORC_AUTH_TOKEN",
        parsers.text,
        None,
        "Bearer token for the API; at least 32 characters (orc token generate).",
        "set a random token of at least 32 characters",
        secret=True,
    ),
    Setting(
        "oidc_issuer",
        "ORC_OIDC_ISSUER",
        parsers.http_url,
        None,
        "OIDC issuer URL.",
        "use the issuer's https:// URL",
        operator_only=True,
    ),
    Setting(
        "oidc_client_id",
        "ORC_OIDC_CLIENT_ID",
        parsers.text,
        None,
        "OIDC client ID.",
        "copy the client ID from your identity provider",
        operator_only=True,
    ),
    Setting(
        "oidc_client_secret",
        "ORC_OIDC_CLIENT_SECRET",
        parsers.text,
        None,
        "OIDC client secret.",
        "copy the client secret from your identity provider",
        secret=True,
    ),
    Setting(
        "oidc_allowed_domains",
        "ORC_OIDC_ALLOWED_DOMAINS",
        parsers.lower_list,
        (),
        "Comma-separated email domains allowed to sign in with OIDC (empty: any).",
        "use domains separated by commas, e.g. example.com,example.org",
        operator_only=True,
    ),
    Setting(
        "oidc_admin_emails",
        "ORC_OIDC_ADMIN_EMAILS",
        parsers.lower_list,
        (),
        "Comma-separated emails that are made admin when they sign in.",
        "use emails separated by commas",
        operator_only=True,
    ),
    Setting(
        "oidc_create_users",
        "ORC_OIDC_CREATE_USERS",
        parsers.parse_bool,
        True,
        "Create unknown OIDC users on first sign-in (role member); false refuses them.",
        "use true or false",
        operator_only=True,
    ),
    Setting(
        "secret_key",
        "ORC_SECRET_KEY",
        parsers.secret_key,
        None,
        "Key that signs session cookies and WebSocket tickets (at least 32 characters). "
        "Default: one generated once and kept in ORC_HOME/secret_key (mode 0600); "
        "set it when several replicas must accept each other's sessions.",
        "set a random value of at least 32 characters (orc token generate makes one)",
        secret=True,
    ),
    Setting(
        "metrics_token",
        "ORC_METRICS_TOKEN",
        parsers.text,
        None,
        "Bearer token that may read /api/metrics (besides admins) when auth is on.",
        "set a random token of at least 32 characters (orc token generate makes one)",
        secret=True,
    ),
    Setting(
        "metrics_public_loopback",
        "ORC_METRICS_PUBLIC_LOOPBACK",
        parsers.parse_bool,
        False,
        "Let requests from loopback read /api/metrics without auth when auth is on.",
        "use true or false",
        operator_only=True,
    ),
    Setting(
        "log_level",
        "ORC_LOG_LEVEL",
        parsers.choice("debug", "info", "warning", "error", "critical"),
        "info",
        "Log level.",
        "use debug, info, warning, error or critical",
    ),
    Setting(
        "log_format",
        "ORC_LOG_FORMAT",
        parsers.choice("json", "text"),
        "json",
        "Log format: json (one object per line) or text.",
        "use json or text",
    ),
    Setting(
        "access_log_probes",
        "ORC_ACCESS_LOG_PROBES",
        parsers.parse_bool,
        False,
        "Write access-log lines for /api/health, /api/health/ready and /api/metrics too.",
        "use true or false",
    ),
    Setting(
        "shutdown_timeout",
        "ORC_SHUTDOWN_TIMEOUT",
        parsers.positive_float,
        5.0,
        "Seconds a stopping server waits for open requests and jobs before it exits.",
        "use a number of seconds greater than 0",
    ),
    Setting(
        "worker_threads",
        "ORC_WORKER_THREADS",
        parsers.positive_int,
        2,
        "Threads of the job worker (Huey consumer).",
        "use a whole number of at least 1",
    ),
    Setting(
        "disk_warn_mb",
        "ORC_DISK_WARN_MB",
        parsers.positive_int,
        500,
        "Readiness reports a disk warning when ORC_HOME has less free space (MiB).",
        "use a whole number of MiB",
    ),
    Setting(
        "disk_critical_mb",
        "ORC_DISK_CRITICAL_MB",
        parsers.non_negative_int,
        100,
        "Readiness fails (503) when ORC_HOME has less free space than this (MiB): SQLite, its WAL, "
        "the job queue and backups need room to write. 0 turns the check off.",
        "use a whole number of MiB, below ORC_DISK_WARN_MB (0 turns the check off)",
    ),
    Setting(
        "proxies_count",
        "ORC_PROXIES_COUNT",
        parsers.non_negative_int,
        0,
        "Reverse proxies in front of orc whose X-Forwarded-For and X-Forwarded-Proto it trusts "
        "for the client's address and scheme: 1 behind Caddy, 0 (default) ignores those headers, "
        "which any client could forge.",
        "use 0, or the number of proxies between clients and orc (1 behind Caddy)",
        operator_only=True,
    ),
    Setting(
        "event_retention_days",
        "ORC_EVENT_RETENTION_DAYS",
        parsers.positive_int,
        7,
        "Days the event outbox keeps events for clients that reconnect with since.",
        "use a whole number of days",
    ),
    Setting(
        "backup_dir",
        "ORC_BACKUP_DIR",
        Path,
        None,
        "Directory for backups and their manifests. Default: ORC_HOME/backups.",
        "set ORC_BACKUP_DIR to a writable directory",
        operator_only=True,
    ),
    Setting(
        "backup_enabled",
        "ORC_BACKUP_ENABLED",
        parsers.parse_bool,
        True,
        "Take scheduled backups in the job worker.",
        "use true or false",
    ),
    Setting(
        "backup_schedule",
        "ORC_BACKUP_SCHEDULE",
        parsers.cron_expression,
        "0 3 * * *",
        "When the worker takes scheduled backups: a cron expression in UTC.",
        "use five cron fields, e.g. '0 3 * * *' for 03:00 UTC daily",
    ),
    Setting(
        "backup_keep_daily",
        "ORC_BACKUP_KEEP_DAILY",
        parsers.non_negative_int,
        7,
        "Prune keeps the newest backup of each of this many days.",
        "use a whole number (0 keeps none by day)",
    ),
    Setting(
        "backup_keep_weekly",
        "ORC_BACKUP_KEEP_WEEKLY",
        parsers.non_negative_int,
        4,
        "Prune keeps the newest backup of each of this many ISO weeks.",
        "use a whole number (0 keeps none by week)",
    ),
    Setting(
        "backup_keep_monthly",
        "ORC_BACKUP_KEEP_MONTHLY",
        parsers.non_negative_int,
        6,
        "Prune keeps the newest backup of each of this many months.",
        "use a whole number (0 keeps none by month)",
    ),
    Setting(
        "backup_keep_pre_migration",
        "ORC_BACKUP_KEEP_PRE_MIGRATION",
        parsers.positive_int,
        3,
        "Pre-migration and pre-restore backups kept (newest first), each kind on its own.",
        "use a whole number of at least 1",
    ),
    Setting(
        "backup_check",
        "ORC_BACKUP_CHECK",
        parsers.choice("quick", "full"),
        "quick",
        "Check of each new SQLite backup: quick (PRAGMA quick_check) or full (integrity_check).",
        "use quick or full",
    ),
    Setting(
        "backup_gzip",
        "ORC_BACKUP_GZIP",
        parsers.parse_bool,
        False,
        "Compress backups with gzip (smaller, slower).",
        "use true or false",
    ),
    Setting(
        "litestream_enabled",
        "ORC_LITESTREAM_ENABLED",
        parsers.parse_bool,
        False,
        "Litestream replicates orc.db: the worker checks replication every minute.",
        "use true or false",
        operator_only=True,
    ),
    Setting(
        "litestream_config",
        "ORC_LITESTREAM_CONFIG",
        Path,
        Path("/etc/litestream.yml"),
        "Path of Litestream's config file (its dbs and replicas).",
        "set ORC_LITESTREAM_CONFIG to the path of litestream.yml",
        operator_only=True,
    ),
    Setting(
        "anthropic_api_key",
        "ANTHROPIC_API_KEY",
        parsers.text,
        None,
        "API key the agent (Claude Code) uses; or set CLAUDE_CODE_OAUTH_TOKEN.",
        "create a key in the Anthropic console and set ANTHROPIC_API_KEY",
        secret=True,
    ),
    Setting(
        "claude_code_oauth_token",
        "CLAUDE_CODE_OAUTH_TOKEN",
        parsers.text,
        None,
        "OAuth token the agent uses instead of an API key (`claude setup-token`).",
        "run `claude setup-token` and set CLAUDE_CODE_OAUTH_TOKEN",
        secret=True,
    ),
    Setting(
        "agent_model",
        "ORC_AGENT_MODEL",
        parsers.text,
        None,
        "Model the agent uses (default: Claude Code's own default).",
        "use a model name such as claude-sonnet-4-5",
    ),
    Setting(
        "agent_phase_models",
        "ORC_AGENT_PHASE_MODELS",
        parsers.phase_models,
        (),
        "A model for some phases: review=claude-opus-4-5,docs=claude-haiku-4-5.",
        "use phase=model pairs separated by commas",
    ),
    Setting(
        "agent_permission_mode",
        "ORC_AGENT_PERMISSION_MODE",
        parsers.permission_mode,
        "acceptEdits",
        "Claude Code's permission mode: acceptEdits (edits allowed, other tools only if "
        "listed in ORC_AGENT_ALLOWED_TOOLS), bypassPermissions (everything; not as root).",
        "use acceptEdits, bypassPermissions, default or plan",
        operator_only=True,
    ),
    Setting(
        "agent_allowed_tools",
        "ORC_AGENT_ALLOWED_TOOLS",
        parsers.name_list,
        ("Read", "Write", "Edit", "MultiEdit", "Glob", "Grep", "LS", "Bash", "TodoWrite"),
        "Tools the agent may use without asking (Claude Code's --allowedTools).",
        "use tool names separated by commas, e.g. Read,Write,Edit,Bash",
        operator_only=True,
    ),
    Setting(
        "agent_max_iterations",
        "ORC_AGENT_MAX_ITERATIONS",
        parsers.positive_int,
        10,
        "Agent turns a phase may take before the task fails.",
        "use a whole number of at least 1",
    ),
    Setting(
        "agent_phase_timeout",
        "ORC_AGENT_PHASE_TIMEOUT",
        parsers.positive_float,
        3600.0,
        "Seconds a phase may run before the task fails.",
        "use a number of seconds greater than 0",
    ),
    Setting(
        "agent_idle_timeout",
        "ORC_AGENT_IDLE_TIMEOUT",
        parsers.positive_float,
        600.0,
        "Seconds without any message from the agent before orc interrupts it (then retries "
        "once, then fails the task).",
        "use a number of seconds greater than 0",
    ),
    Setting(
        "max_concurrent_runs",
        "ORC_MAX_CONCURRENT_RUNS",
        parsers.positive_int,
        2,
        "Tasks the agent works on at once, across all workers sharing the database.",
        "use a whole number of at least 1",
    ),
    Setting(
        "task_budget_usd",
        "ORC_TASK_BUDGET_USD",
        parsers.positive_float,
        None,
        "Default spend limit per task in USD; a run that reaches it pauses (none by default).",
        "use an amount in USD greater than 0",
    ),
    Setting(
        "review_max_rounds",
        "ORC_REVIEW_MAX_ROUNDS",
        parsers.non_negative_int,
        2,
        "How often a review with findings may send a task back to implement.",
        "use a whole number (0 or more)",
    ),
    Setting(
        "git_author",
        "ORC_GIT_AUTHOR",
        parsers.git_author,
        "orc <orc@localhost>",
        "Author of the commits orc makes on task branches: Name <email>.",
        "use the form Name <email>",
    ),
    Setting(
        "transcript_retention_days",
        "ORC_TRANSCRIPT_RETENTION_DAYS",
        parsers.positive_int,
        90,
        "Days task transcripts are kept.",
        "use a whole number of days",
    ),
)

SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}
