"""Databases, the job queue, backups and keys are 0600 whatever the directory's mode.

ORC_HOME is often a volume that already exists with a wider mode (0755), and the process's
umask (022 here, as on most systems) would make new files 0644: readable by every local user.
Real `orc` processes, on SQLite and PostgreSQL (a PostgreSQL backup is a file too).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
from pathlib import Path

from orc.auth.secret_key import load_secret_key
from orc.config import load_settings
from tests.support import ORC


def _orc(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run orc with the usual umask (022), which alone would make new files 0644."""
    command = ["sh", "-c", 'umask 022 && exec "$@"', "sh", *ORC, *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _private_files(directory: Path) -> dict[str, int]:
    return {p.name: _mode(p) for p in directory.iterdir() if p.is_file() and _mode(p) & 0o077}


def test_everything_orc_writes_is_owner_only_in_a_wide_directory(
    orc_env: dict[str, str], tmp_path: Path
):
    home = Path(orc_env["ORC_HOME"])
    backups = home / "backups"
    backups.mkdir(parents=True)
    for directory in (home, backups):
        os.chmod(directory, 0o755)  # a volume that existed before orc
    sqlite = not orc_env["DATABASE_URL"].startswith("postgres")

    _orc(["migrate"], orc_env)
    name = _orc(["backup", "now", "--quiet"], orc_env).stdout.strip()
    assert (backups / name).is_file()
    if sqlite:
        database = home / "orc.db"
        assert _mode(database) == 0o600
        _orc(["backup", "restore", name], orc_env)
        assert _mode(database) == 0o600, "the restored database took the umask's mode"

    settings = load_settings(environ=orc_env, cwd=tmp_path)
    previous = os.umask(0o022)
    try:
        load_secret_key(settings)
        from workers.queue import configure_queue

        configure_queue(settings).storage.enqueued_items()
    finally:
        os.umask(previous)
    assert (home / "queue.db").is_file() and (home / "secret_key").is_file()
    assert _private_files(home) == {}, "readable by group or others"
    assert _private_files(backups) == {}, "readable by group or others"
    assert len(list(backups.iterdir())) >= 2  # the backup, its manifest (and a safety copy)


def test_a_database_made_by_an_older_orc_is_made_private(sqlite_env: dict[str, str]):
    home = Path(sqlite_env["ORC_HOME"])
    home.mkdir(mode=0o755)
    database = home / "orc.db"
    sqlite3.connect(database).close()
    os.chmod(database, 0o644)
    _orc(["migrate"], sqlite_env)
    assert _mode(database) == 0o600
    assert _private_files(home) == {}
