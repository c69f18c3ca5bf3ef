"""The environment the agent runs with: its credentials and what a CLI needs, nothing of orc's.

The agent executes code the task asks for; it must never see orc's tokens, DATABASE_URL, the
OIDC client secret or the session key. It gets its own HOME (Claude Code keeps its session
files there), so runs of different tasks never share state and the operator's own
``~/.claude`` is never read or written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from orc.config import ConfigError, Settings

# Credentials the agent needs (one of the first two) and where its API lives.
AGENT_CREDENTIALS = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")
PASS_THROUGH = (
    "ANTHROPIC_BASE_URL",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
    # How often Claude Code retries a failed API call (429, 529, 5xx) before the turn fails.
    "CLAUDE_CODE_MAX_RETRIES",
    # Proxies and the certificates of a company's TLS-inspecting proxy.
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    # What any command-line program expects.
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "TERM",
)
AGENT_HOMES_DIR = "agent-home"


def agent_home(orc_home: Path, task_id: str) -> Path:
    return orc_home / AGENT_HOMES_DIR / task_id


def agent_environment(
    environ: Mapping[str, str],
    home: Path,
    credentials: Mapping[str, str],
) -> dict[str, str]:
    """The whole environment of the agent's process (``credentials`` from orc's settings)."""
    env = {name: environ[name] for name in PASS_THROUGH if name in environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update({name: value for name, value in credentials.items() if value})
    env["HOME"] = str(home)
    # Claude Code must not update itself or phone home from a server's worker.
    env["DISABLE_AUTOUPDATER"] = "1"
    return env


def check_agent_policy(settings: Settings, euid: int | None = None) -> None:
    """Refuse, at start-up, an agent configuration that would fail every run."""
    euid = os.geteuid() if euid is None else euid
    if settings.agent_permission_mode == "bypassPermissions" and euid == 0:
        raise ConfigError(
            "ORC_AGENT_PERMISSION_MODE=bypassPermissions: Claude Code refuses it when run as "
            "root; run orc as a non-root user (the container runs as uid 1000) or use acceptEdits"
        )
