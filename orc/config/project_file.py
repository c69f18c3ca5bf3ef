"""``orc init``: a project's own configuration file."""

from __future__ import annotations

import os
from pathlib import Path

from orc.config import CONFIG_FILE_NAME, PROJECT_DIR_NAME, SETTINGS, format_value

HEADER = """\
# orc settings for this project. Uncomment a line to change it; the environment variable
# named beside each setting overrides this file. See docs/configuration.md.
# Who gets in, where data goes and where orc listens (host, port, auth, OIDC, database,
# backups, secrets) are not set here: set them in the environment or in ORC_HOME/config.yaml.
"""


def config_template() -> str:
    """Every settable option, commented out, with its default and meaning."""
    lines = [HEADER]
    for setting in SETTINGS:
        if setting.env_only or setting.from_operator_only:
            continue
        default = "" if setting.default is None else format_value(setting.default)
        lines.append(f"# {setting.help} ({setting.env})")
        lines.append(f"# {setting.name}: {default}\n")
    return "\n".join(lines)


def init_project(project_dir: Path, home: Path) -> tuple[Path, bool]:
    """Create ``project_dir/.orc/config.yaml`` unless it exists; return (path, created)."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    config_dir = project_dir / PROJECT_DIR_NAME
    config_dir.mkdir(exist_ok=True)
    path = config_dir / CONFIG_FILE_NAME
    try:
        # O_EXCL: if the file appears between a check and the write, we still never overwrite it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return path, False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(config_template())
    return path, True
