"""`orc backup restore FILE.sql.gz`: the team compose's PostgreSQL dumps restore, for real.

The dumps are made here with the real pg_dump and the options of the compose file's backup
service (prodrigestivill/postgres-backup-local: ``-Z1 --schema=public --blobs``), and with the
spec's manual ``pg_dump | gzip``; they are restored into the real PostgreSQL. SQLite has no
such dumps: there the command refuses them.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.backup_support import orc_ok
from tests.support import base_env, run_orc

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def pg_env(tmp_path: Path, postgres_database: str) -> dict[str, str]:
    env = base_env(tmp_path)
    env["DATABASE_URL"] = postgres_database
    return env


def _pg_dump(*args: str) -> None:
    pg_dump = shutil.which("pg_dump")
    assert pg_dump is not None, "pg_dump is missing: scripts/test installs postgresql-client"
    subprocess.run([pg_dump, *args], check=True, capture_output=True)


def backup_service_dump(database_url: str, dest: Path) -> Path:
    """What the backup service writes to backups/daily/orc-YYYYMMDD.sql.gz."""
    _pg_dump(f"--dbname={database_url}", f"--file={dest}", "-Z1", "--schema=public", "--blobs")
    return dest


def manual_dump(database_url: str, dest: Path) -> Path:
    """The spec's `pg_dump -U orc orc | gzip > backup-YYYYMMDD.sql.gz`."""
    plain = dest.with_suffix("")
    _pg_dump(f"--dbname={database_url}", f"--file={plain}")
    with plain.open("rb") as src, gzip.open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
    plain.unlink()
    return dest


@pytest.mark.parametrize("make_dump", [backup_service_dump, manual_dump], ids=lambda f: f.__name__)
def test_a_sql_gz_dump_restores_the_tasks_it_holds(pg_env, tmp_path: Path, make_dump):
    orc_ok(["new", "kept from the dump"], pg_env)
    dump = make_dump(pg_env["DATABASE_URL"], tmp_path / "orc-20260110.sql.gz")
    orc_ok(["new", "made after the dump"], pg_env)

    result = run_orc(["backup", "restore", str(dump)], pg_env)
    assert result.returncode == 0, result.stderr
    assert "safety backup of the previous database: " in result.stdout
    assert "restored orc-20260110.sql.gz" in result.stdout

    listing = orc_ok(["list"], pg_env)
    assert "kept from the dump" in listing
    assert "made after the dump" not in listing
    # New rows get fresh ids: the sequences came back with the dump.
    orc_ok(["new", "after the restore"], pg_env)
    assert "TASK-002" in orc_ok(["list"], pg_env)


def test_a_truncated_dump_is_refused_and_changes_nothing(pg_env, tmp_path: Path):
    orc_ok(["new", "still here"], pg_env)
    dump = backup_service_dump(pg_env["DATABASE_URL"], tmp_path / "orc-20260110.sql.gz")
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) // 2])

    result = run_orc(["backup", "restore", str(dump)], pg_env)
    assert result.returncode == 1
    assert "orc: error: orc-20260110.sql.gz cannot be read as a plain-SQL dump" in result.stderr
    assert "still here" in orc_ok(["list"], pg_env)


def test_a_file_that_is_not_a_dump_is_refused(pg_env, tmp_path: Path):
    orc_ok(["new", "still here"], pg_env)
    fake = tmp_path / "notes.sql"
    fake.write_text("DROP TABLE task;\n")
    result = run_orc(["backup", "restore", str(fake)], pg_env)
    assert result.returncode == 1
    assert "is not a pg_dump plain-SQL dump" in result.stderr
    assert "still here" in orc_ok(["list"], pg_env)
    missing = run_orc(["backup", "restore", str(tmp_path / "missing.sql.gz")], pg_env)
    assert missing.returncode == 2
    assert "is not a file" in missing.stderr


def test_sqlite_refuses_a_postgres_dump(tmp_path: Path, postgres_database: str):
    dump = backup_service_dump(postgres_database, tmp_path / "orc-20260110.sql.gz")
    result = run_orc(["backup", "restore", str(dump)], base_env(tmp_path))
    assert result.returncode == 1
    assert "is a PostgreSQL dump; DATABASE_URL is SQLite" in result.stderr
