"""Backup and restore round trips on SQLite and PostgreSQL, through the real `orc` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.backup_support import backup_dir, backups, orc_ok, synthetic_backup, titles
from tests.support import run_orc


def test_round_trip_restores_the_original_data_and_a_server_serves_it(
    migrated, orc_env, database_url, app_factory
):
    orc_ok(["new", "kept one"], orc_env)
    orc_ok(["new", "kept two"], orc_env)
    taken = orc_ok(["backup", "now", "-q"], orc_env).strip()
    orc_ok(["new", "made after the backup"], orc_env)
    assert titles(database_url) == ["kept one", "kept two", "made after the backup"]

    out = orc_ok(["backup", "restore", "latest"], orc_env)
    assert f"restored {taken}" in out
    assert titles(database_url) == ["kept one", "kept two"]
    listed = {b["name"]: b for b in backups(orc_env)}
    safety = [b for b in listed.values() if b["reason"] == "pre-restore"]
    assert len(safety) == 1 and listed[taken]["reason"] == "manual"
    assert all(b["verified_ok"] for b in listed.values())

    server = app_factory(orc_env)
    body = server.get("/api/tasks").json()
    assert [t["title"] for t in body["items"]] == ["kept two", "kept one"]
    assert server.get("/api/health/ready").json()["checks"]["migrations"] == "ok"

    # The safety backup brings the later task back: restores are reversible.
    server.close()
    orc_ok(["backup", "restore", safety[0]["name"]], orc_env)
    assert titles(database_url) == ["kept one", "kept two", "made after the backup"]


def test_manifest_records_checksum_size_kind_schema_and_times(migrated, orc_env, database_url):
    orc_ok(["new", "x"], orc_env)
    name = orc_ok(["backup", "now", "-q"], orc_env).strip()
    manifest = json.loads((backup_dir(orc_env) / (name + ".json")).read_text())
    kind = "sqlite" if database_url.startswith("sqlite") else "postgres"
    assert manifest["kind"] == kind
    assert manifest["size"] == (backup_dir(orc_env) / name).stat().st_size
    assert len(manifest["sha256"]) == 64
    assert manifest["schema_version"] == manifest["migrations"][-1]
    assert manifest["started_at"] <= manifest["finished_at"]
    assert manifest["orc_version"]
    assert (backup_dir(orc_env) / name).stat().st_mode & 0o077 == 0


def test_restore_refuses_while_a_server_uses_the_database(migrated, orc_env, app_factory):
    orc_ok(["new", "x"], orc_env)
    orc_ok(["backup", "now"], orc_env)
    server = app_factory(orc_env)  # in this process: for `orc backup restore` just another one
    server.get("/api/tasks")  # the API has the database open now
    result = run_orc(["backup", "restore", "latest"], orc_env)
    assert result.returncode == 1
    assert result.stderr.startswith("orc: error: ") and len(result.stderr.splitlines()) == 1
    assert "stop orc first" in result.stderr and "--force" in result.stderr
    assert [b["reason"] for b in backups(orc_env)] == ["manual"]  # nothing was touched


def test_a_backup_from_a_newer_schema_is_refused(migrated, orc_env, database_url):
    orc_ok(["new", "x"], orc_env)
    name = orc_ok(["backup", "now", "-q"], orc_env).strip()
    path = backup_dir(orc_env) / (name + ".json")
    manifest = json.loads(path.read_text())
    manifest["migrations"].append("0099_from_the_future")
    manifest["schema_version"] = "0099_from_the_future"
    path.write_text(json.dumps(manifest))
    result = run_orc(["backup", "restore", name], orc_env)
    assert result.returncode == 1
    assert "newer orc" in result.stderr and "0099_from_the_future" in result.stderr
    assert titles(database_url) == ["x"]


def test_migrate_takes_a_pre_migration_backup_of_a_database_with_data(orc_env, database_url):
    from orc.db.schema import known_migrations

    _migrate_to_first(database_url)
    out = orc_ok(["migrate"], orc_env)
    assert "pre-migration backup orc-" in out
    (taken,) = backups(orc_env)
    assert taken["reason"] == "pre-migration"
    assert taken["migrations"] == known_migrations()[:1]
    assert orc_ok(["migrate"], orc_env).strip() == "database is up to date"
    assert len(backups(orc_env)) == 1  # nothing pending: no backup


def test_pre_migration_backups_are_capped(orc_env):
    orc_env["ORC_BACKUP_KEEP_PRE_MIGRATION"] = "2"
    folder = backup_dir(orc_env)
    folder.mkdir(parents=True)
    days = [f"2026-01-0{day}" for day in range(1, 5)]
    names = [synthetic_backup(folder, day, "pre-migration") for day in days]
    orc_ok(["backup", "prune"], orc_env)
    assert [b["name"] for b in backups(orc_env)] == names[2:]


def test_unknown_backup_name_is_a_one_line_usage_error(migrated, orc_env):
    orc_ok(["new", "x"], orc_env)
    orc_ok(["backup", "now"], orc_env)
    result = run_orc(["backup", "restore", "nope"], orc_env)
    assert result.returncode == 2
    assert result.stderr.startswith("orc: error: no backup named 'nope'")
    assert "Traceback" not in result.stderr


def test_gzip_backups_verify_and_restore(migrated, orc_env, database_url, tmp_path: Path):
    orc_env["ORC_BACKUP_GZIP"] = "true"  # PostgreSQL ignores it: pg_dump -Fc is compressed
    orc_ok(["new", "zipped"], orc_env)
    name = orc_ok(["backup", "now", "-q"], orc_env).strip()
    assert name.endswith(".db.gz") == database_url.startswith("sqlite")
    orc_ok(["backup", "verify", name], orc_env)
    orc_ok(["new", "later"], orc_env)
    orc_ok(["backup", "restore", name], orc_env)
    assert titles(database_url) == ["zipped"]


@pytest.mark.slow
def test_restoring_an_older_schema_removes_newer_tables_so_migrate_works_again(
    orc_env, database_url
):
    """The rollback path: a pre-migration backup restored after the upgrade migrated."""
    from tests.backup_support import query

    _migrate_to_first(database_url)
    orc_ok(["migrate"], orc_env)  # takes the pre-migration backup, then migrates
    orc_ok(["new", "made on the new schema"], orc_env)
    (old,) = backups(orc_env)
    orc_ok(["backup", "restore", old["name"]], orc_env)
    # sqlite3.OperationalError or asyncpg.UndefinedTableError: the newer table is gone.
    with pytest.raises(Exception, match="task"):
        query(database_url, "SELECT count(*) FROM task")
    assert "applied" in orc_ok(["migrate", "--no-backup"], orc_env)
    assert titles(database_url) == []


def _migrate_to_first(database_url: str) -> None:
    """A database at the first migration only: what an older orc left behind."""
    import asyncio

    from tortoise.migrations.executor import MigrationTarget

    from orc.db import close_database, open_database
    from orc.db.schema import _executor, known_migrations

    async def run() -> None:
        await open_database(database_url)
        try:
            await _executor(database_url).migrate(
                targets=[MigrationTarget("orc", known_migrations()[0])]
            )
        finally:
            await close_database()

    asyncio.run(run())
