"""Helpers for the backup tests: run orc commands, read titles straight from the database."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg

from orc.db.url import DatabaseUrl
from tests.support import run_orc


def orc_ok(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    """Run an orc command that must succeed; return its stdout."""
    result = run_orc(args, env, timeout=timeout)
    assert result.returncode == 0, f"orc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def backups(env: dict[str, str]) -> list[dict[str, Any]]:
    """`orc backup list --json`."""
    return json.loads(orc_ok(["backup", "list", "--json"], env))


def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run one read query on either database (outside orc)."""
    if DatabaseUrl(database_url).is_sqlite:
        conn = sqlite3.connect(str(DatabaseUrl(database_url).sqlite_path))
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    async def run() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(**DatabaseUrl(database_url).asyncpg_connect_args())
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(run())


def titles(database_url: str) -> list[str]:
    return [row[0] for row in query(database_url, "SELECT title FROM task ORDER BY number")]


def backup_dir(env: dict[str, str]) -> Path:
    return Path(env.get("ORC_BACKUP_DIR") or Path(env["ORC_HOME"]) / "backups")


def fill(database_url: str, rows: int) -> None:
    """Add ``rows`` usage events of incompressible text, so backups take a while and are big."""
    if DatabaseUrl(database_url).is_sqlite:
        conn = sqlite3.connect(str(DatabaseUrl(database_url).sqlite_path))
        try:
            conn.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                "INSERT INTO usage_event (task_number, phase, model, input_tokens, output_tokens,"
                " cache_read_tokens, cache_write_tokens, occurred_at) SELECT i, 'p', "
                "hex(randomblob(40)), 1, 1, 1, 1, '2026-01-01 00:00:00+00:00' FROM n",
                (rows,),
            )
            conn.commit()
        finally:
            conn.close()
        return

    async def run() -> None:
        conn = await asyncpg.connect(**DatabaseUrl(database_url).asyncpg_connect_args())
        try:
            await conn.execute(
                "INSERT INTO usage_event (task_number, phase, model, input_tokens, output_tokens,"
                " cache_read_tokens, cache_write_tokens, occurred_at) SELECT i, 'p', "
                "md5(random()::text) || md5(random()::text) || md5(random()::text), 1, 1, 1, 1,"
                " now() FROM generate_series(1, $1) AS i",
                rows,
            )
        finally:
            await conn.close()

    asyncio.run(run())


def synthetic_backup(folder: Path, day: str, reason: str) -> str:
    """A tiny fake backup dated 03:00 UTC on ``day`` (for retention tests); returns its name."""
    from orc.backup.manifest import Manifest, write_manifest

    name = f"orc-{day}T03-00-00.000Z-{reason}.db"
    (folder / name).write_bytes(b"old")
    write_manifest(
        folder,
        Manifest(
            name=name,
            kind="sqlite",
            reason=reason,
            size=3,
            sha256="0" * 64,
            gzip=False,
            schema_version=None,
            migrations=[],
            orc_version="0",
            started_at=f"{day}T03:00:00+00:00",
            finished_at=f"{day}T03:00:01+00:00",
            duration_seconds=1.0,
        ),
    )
    return name
