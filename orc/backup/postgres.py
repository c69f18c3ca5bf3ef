"""PostgreSQL backups with pg_dump -Fc, checked with pg_restore --list, restored with pg_restore."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orc.backup.exclusive import LOCK_APPLICATION_NAME
from orc.backup.files import watch_size
from orc.backup.manifest import BackupError
from orc.db.url import DatabaseUrl

if TYPE_CHECKING:
    import asyncpg

# asyncpg is imported where a session opens: the API and the job worker import this module
# whatever the database, and on SQLite they need not load asyncpg (~3 MiB).

TOOL_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)")


def libpq_env(database_url: DatabaseUrl | str) -> dict[str, str]:
    """Environment for pg_dump/pg_restore: credentials stay off the command line."""
    creds = DatabaseUrl.of(database_url).connection_config()["credentials"]
    env = dict(os.environ)
    env.update(
        PGHOST=str(creds["host"]),
        PGPORT=str(creds["port"]),
        PGDATABASE=str(creds["database"]),
        PGSSLMODE=str(creds["ssl"]),
        PGCONNECT_TIMEOUT=str(creds["timeout"]),
    )
    if creds.get("user"):
        env["PGUSER"] = str(creds["user"])
    if creds.get("password"):
        env["PGPASSWORD"] = str(creds["password"])
    return env


def find_tool(name: str) -> str:
    """The path of a PostgreSQL client tool, or a BackupError that says how to get it."""
    path = shutil.which(name)
    if path is None:
        raise BackupError(
            f"{name} is not installed or not on PATH; install the PostgreSQL client "
            "(e.g. apt-get install postgresql-client) matching your server's version or newer"
        )
    return path


def tool_major(path: str) -> int:
    """The major version of pg_dump/pg_restore at ``path``."""
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    match = TOOL_VERSION.search(out.stdout)
    if match is None:
        raise BackupError(f"cannot tell the version of {path}: {out.stdout.strip()!r}")
    return int(match.group(1))


@contextlib.asynccontextmanager
async def _session(database_url: DatabaseUrl | str) -> AsyncIterator[asyncpg.Connection]:
    """A short session; a failure to reach the server is one line for users."""
    import asyncpg

    try:
        conn = await asyncpg.connect(**DatabaseUrl.of(database_url).asyncpg_connect_args())
        try:
            yield conn
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise BackupError(f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}") from None


async def server_facts(database_url: DatabaseUrl | str) -> tuple[int, list[str]]:
    """The server's major version and the migrations applied to the database."""
    import asyncpg

    async with _session(database_url) as conn:
        version = int(await conn.fetchval("SHOW server_version_num"))
        try:
            rows = await conn.fetch(
                "SELECT name FROM tortoise_migrations WHERE app = 'orc' ORDER BY name"
            )
        except asyncpg.UndefinedTableError:
            rows = []
        return version // 10000, [row["name"] for row in rows]


async def check_dump_tool(database_url: DatabaseUrl | str) -> tuple[str, list[str]]:
    """pg_dump's path and the applied migrations; refuses a pg_dump older than the server."""
    pg_dump = find_tool("pg_dump")
    server_major, migrations = await server_facts(database_url)
    major = await asyncio.to_thread(tool_major, pg_dump)
    if major < server_major:
        raise BackupError(
            f"pg_dump {major} cannot dump a PostgreSQL {server_major} server; "
            f"install postgresql-client-{server_major} (or newer) and put it first on PATH"
        )
    return pg_dump, migrations


def _run(args: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"{what} failed: {failure_detail(result)}")
    return result


def failure_detail(result: subprocess.CompletedProcess[str]) -> str:
    """The line of a PostgreSQL tool's stderr that says why it failed: its first ERROR or FATAL
    line, not the NOTICEs that come before it (a DROP ... CASCADE prints some), else the first
    line that is not a NOTICE, else the exit code."""
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR:" in line or "FATAL:" in line]
    others = [line for line in lines if "NOTICE:" not in line]
    return (errors or others or [f"exit code {result.returncode}"])[0]


def dump_postgres(
    database_url: DatabaseUrl | str,
    pg_dump: str,
    dest: Path,
    on_bytes: Callable[[int], object] | None = None,
) -> None:
    """Write a custom-format dump of the database to ``dest``.

    pg_dump fsyncs the file before it exits; the disk writes it while it is being dumped.
    """
    args = [pg_dump, "--format=custom", "--no-password", f"--file={dest}"]
    with watch_size(dest, on_bytes, writeback=True):
        _run(args, libpq_env(database_url), "pg_dump")


def check_dump(path: Path) -> None:
    """``pg_restore --list``: the dump's table of contents reads to the end."""
    pg_restore = find_tool("pg_restore")
    _run([pg_restore, "--list", str(path)], dict(os.environ), f"pg_restore --list {path.name}")


# Tables of the schema that the dump does not have (made by a newer migration) would survive
# a plain --clean and make the next migration fail with "already exists": drop every table
# first, in the same transaction as the restore. Functions too (the task counts' trigger
# function): a plain SQL dump, as the team setup's backup service writes, creates them
# without OR REPLACE. Functions an extension owns stay.
DROP_ALL_TABLES = """
DO $$
DECLARE t record;
BEGIN
  FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP
    EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', t.tablename);
  END LOOP;
  FOR t IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
    WHERE p.pronamespace = current_schema()::regnamespace
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
  LOOP
    EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', t.signature);
  END LOOP;
END $$;
"""


def restore_postgres(database_url: DatabaseUrl | str, path: Path) -> None:
    """Replace the database's tables with the custom-format dump's, in one transaction.

    ``pg_restore --clean --if-exists`` writes the SQL; ``run_restore_script`` runs it.
    """
    pg_restore = find_tool("pg_restore")
    # The SQL goes to a file first: were pg_restore to die half-way while piping into psql,
    # psql would see a short input, COMMIT it, and leave the tables dropped and half filled.
    script = path.with_name(f".restore-{os.getpid()}.sql")
    try:
        produced = subprocess.run(
            [
                pg_restore,
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                f"--file={script}",
                str(path),
            ],
            env=libpq_env(database_url),
            capture_output=True,
            text=True,
            check=False,
        )
        if produced.returncode != 0:
            detail = failure_detail(produced)
            raise BackupError(f"pg_restore failed (nothing was changed): {detail}")
        run_restore_script(database_url, script)
    finally:
        script.unlink(missing_ok=True)


def run_restore_script(database_url: DatabaseUrl | str, script: Path) -> None:
    """Drop every table of the schema, then run ``script`` with psql, all in one transaction
    (an error rolls everything back)."""
    consumer = subprocess.run(
        [
            find_tool("psql"),
            "--no-psqlrc",
            "--quiet",
            "--single-transaction",
            "--set=ON_ERROR_STOP=1",
            "--no-password",
            f"--command={DROP_ALL_TABLES}",
            f"--file={script}",
        ],
        env=libpq_env(database_url),
        capture_output=True,
        text=True,
        check=False,
    )
    if consumer.returncode != 0:
        detail = failure_detail(consumer)
        raise BackupError(f"restoring with psql failed (nothing was changed): {detail}")


async def other_sessions(database_url: DatabaseUrl | str) -> list[dict[str, Any]]:
    """Other client connections to this database (a server that is using it)."""
    async with _session(database_url) as conn:
        rows = await conn.fetch(
            "SELECT pid, application_name, client_addr::text AS addr FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend' AND application_name <> $1",
            LOCK_APPLICATION_NAME,
        )
        return [dict(row) for row in rows]
