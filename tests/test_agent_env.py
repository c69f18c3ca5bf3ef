"""The agent's environment holds its credentials and nothing of orc's; secrets are redacted."""

from __future__ import annotations

from pathlib import Path

from orc.runs.agent_env import agent_environment, agent_home
from orc.runs.redaction import REDACTED, Redactor

ORC_ENVIRONMENT = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/orc",
    "HTTPS_PROXY": "http://proxy:3128",
    "NODE_EXTRA_CA_CERTS": "/etc/ssl/company.pem",
    "ORC_AUTH_TOKEN": "server-token-0123456789abcdef0123456789",
    "DATABASE_URL": "postgres://orc:secret@db/orc",
    "ORC_OIDC_CLIENT_SECRET": "oidc-secret",
    "ORC_SECRET_KEY": "k" * 40,
    "ANTHROPIC_API_KEY": "sk-ant-from-orcs-own-environment",
    "AWS_SECRET_ACCESS_KEY": "aws",
}


def test_the_agent_gets_its_credentials_proxies_and_a_home_of_its_own(tmp_path: Path):
    home = agent_home(tmp_path, "TASK-001")
    env = agent_environment(ORC_ENVIRONMENT, home, {"ANTHROPIC_API_KEY": "sk-ant-configured"})
    assert env == {
        "PATH": "/usr/bin:/bin",
        "HTTPS_PROXY": "http://proxy:3128",
        "NODE_EXTRA_CA_CERTS": "/etc/ssl/company.pem",
        "ANTHROPIC_API_KEY": "sk-ant-configured",
        "HOME": str(tmp_path / "agent-home" / "TASK-001"),
        "DISABLE_AUTOUPDATER": "1",
    }


def test_known_secrets_and_token_shaped_strings_are_redacted_everywhere():
    redactor = Redactor(["server-token-0123456789", None, "short", "hunter2-password"])
    text = "token server-token-0123456789 and sk-ant-api03-AAAABBBBCCCC and orc_pat_abcdEFGH1234"
    assert redactor.text(text) == f"token {REDACTED} and {REDACTED} and {REDACTED}"
    assert redactor.text("short stays: it is too short to be a secret") == (
        "short stays: it is too short to be a secret"
    )
    nested = {"command": "echo hunter2-password", "args": ["x", {"k": "hunter2-password"}], "n": 3}
    assert redactor.value(nested) == {
        "command": f"echo {REDACTED}",
        "args": ["x", {"k": REDACTED}],
        "n": 3,
    }
