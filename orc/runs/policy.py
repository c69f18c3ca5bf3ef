"""From the settings to how runs behave: the agent's configuration, credentials and limits."""

from __future__ import annotations

import os
from collections.abc import Mapping

from orc.config import Settings
from orc.config.parsers import split_author
from orc.runs.agent import AgentConfig, bundled_cli, launcher_path
from orc.runs.engine import RunPolicy
from orc.usage.pricing import load_prices


def agent_credentials(settings: Settings) -> dict[str, str]:
    """What the agent authenticates with (one of the two, as configured)."""
    credentials = {}
    if settings.anthropic_api_key:
        credentials["ANTHROPIC_API_KEY"] = settings.anthropic_api_key
    if settings.claude_code_oauth_token:
        credentials["CLAUDE_CODE_OAUTH_TOKEN"] = settings.claude_code_oauth_token
    return credentials


def secrets_of(settings: Settings) -> tuple[str, ...]:
    """Every secret a transcript must never show."""
    password = (
        settings.database.asyncpg_connect_args().get("password")
        if (not settings.database.is_sqlite)
        else None
    )
    values = (
        settings.anthropic_api_key,
        settings.claude_code_oauth_token,
        settings.auth_token,
        settings.oidc_client_secret,
        settings.secret_key,
        settings.metrics_token,
        password,
    )
    return tuple(value for value in values if value)


def run_policy(settings: Settings, environ: Mapping[str, str] | None = None) -> RunPolicy:
    """The policy the worker's runs follow, built once from its settings."""
    name, email = split_author(settings.git_author)
    agent = AgentConfig(
        cli=bundled_cli(),
        launcher=launcher_path(),
        model=settings.agent_model,
        permission_mode=settings.agent_permission_mode,
        allowed_tools=settings.agent_allowed_tools,
    )
    return RunPolicy(
        home=settings.home,
        agent=agent,
        credentials=agent_credentials(settings),
        environ=dict(os.environ if environ is None else environ),
        prices=load_prices(settings.home),
        secrets=secrets_of(settings),
        max_iterations=settings.agent_max_iterations,
        max_review_rounds=settings.review_max_rounds,
        phase_timeout_seconds=settings.agent_phase_timeout,
        idle_timeout_seconds=settings.agent_idle_timeout,
        default_budget_usd=settings.task_budget_usd,
        author_name=name,
        author_email=email,
        phase_models=dict(settings.agent_phase_models),
    )
