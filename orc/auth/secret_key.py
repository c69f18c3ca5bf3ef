"""The key that signs session cookies and tickets: ORC_SECRET_KEY or one kept in ORC_HOME."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from orc.config import ConfigError, Settings

KEY_FILE_NAME = "secret_key"


def _read_key(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); run chmod 600 {path}"
        )
    key = path.read_text(encoding="utf-8").strip()
    if len(key) < 32:
        raise ConfigError(f"{path} holds no usable key; delete it and orc makes a new one")
    return key


def load_secret_key(settings: Settings) -> str:
    """ORC_SECRET_KEY, else the key in ORC_HOME/secret_key, made (mode 0600) if missing."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.home / KEY_FILE_NAME
    if path.exists():
        return _read_key(path)
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Write a private temp file, then link it into place: when several processes start at
    # once, exactly one link succeeds and nobody ever reads a half-written key.
    temp = path.with_name(f".{KEY_FILE_NAME}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return _read_key(path)
