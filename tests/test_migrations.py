"""The committed migrations build exactly the models' schema, on SQLite and on PostgreSQL."""

from __future__ import annotations

from tortoise.context import TortoiseContext
from tortoise.migrations.autodetector import MigrationAutodetector

from orc.db.schema import (
    applied_migrations,
    known_migrations,
    migrate_database,
    pending_migrations,
)
from orc.db.url import DatabaseUrl


async def test_models_and_committed_migrations_agree(tmp_path):
    config = DatabaseUrl(f"sqlite:///{tmp_path / 'orc.db'}").tortoise_config()
    async with TortoiseContext() as ctx:
        await ctx.init(config=config)
        changes = await MigrationAutodetector(ctx.apps, config["apps"]).changes()
    assert changes == [], (
        "models changed without a migration; run: tortoise -c "
        "orc.db.tortoise_cli.TORTOISE_ORM makemigrations orc -n what_changed"
    )


async def test_migrate_applies_everything_once(database_url):
    assert await migrate_database(database_url, dry_run=True) == known_migrations()
    seen: list[str] = []
    applied = await migrate_database(database_url, progress=seen.append)
    assert applied == known_migrations() == seen
    # A second run (another server starting) finds nothing to do.
    assert await migrate_database(database_url) == []
    assert await migrate_database(database_url, dry_run=True) == []


async def test_applied_migrations_are_recorded(database_url):
    from orc.db import close_database, open_database

    await migrate_database(database_url)
    await open_database(database_url)
    try:
        assert await applied_migrations() == set(known_migrations())
        assert await pending_migrations(database_url) == []
    finally:
        await close_database()


def test_concurrent_migrations_run_once(orc_env):
    """Two servers starting together: the lock lets one migrate, the other finds nothing."""
    import subprocess

    from tests.support import ORC

    procs = [
        subprocess.Popen([*ORC, "migrate"], env=orc_env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = sorted(p.communicate(timeout=60)[0] for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert sorted(o.count("applying 0001_initial") for o in outputs) == [0, 0, 1], outputs


def _sqlite_schema(path) -> list[tuple[str, ...]]:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")
        schema = [tuple(row) for row in rows]
        schema += [
            ("migration", *row)
            for row in conn.execute("SELECT app, name FROM tortoise_migrations ORDER BY id")
        ]
        return schema
    finally:
        conn.close()


async def test_schema_only_state_builds_the_same_schema(tmp_path, monkeypatch):
    """orc's executor skips the projected models' query sets (orc.db.migration_state): the
    database it builds is the one Tortoise's own executor builds, table for table, trigger for
    trigger."""
    from tortoise.migrations import executor
    from tortoise.migrations.schema_generator.state_apps import StateApps

    from orc.db import migration_state

    ours = tmp_path / "ours.db"
    await migrate_database(f"sqlite://{ours}")
    assert executor.StateApps is migration_state.SchemaOnlyStateApps
    # Tortoise's own: use_schema_only_state is made a no-op for this one run.
    monkeypatch.setattr(executor, "StateApps", StateApps)
    monkeypatch.setattr(migration_state, "use_schema_only_state", lambda: None)
    stock = tmp_path / "stock.db"
    await migrate_database(f"sqlite://{stock}")
    schema = _sqlite_schema(ours)
    assert any(row[0] == "trigger" for row in schema)  # RunPython's SQL ran too
    assert schema == _sqlite_schema(stock)
