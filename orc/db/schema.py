"""Schema version: which migrations exist, which are applied, and applying them."""

from __future__ import annotations

import pkgutil
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from orc.db import close_database, default_connection, open_database
from orc.db import migrations as migrations_package
from orc.db.migration_lock import migration_lock
from orc.db.url import DatabaseUrl
from orc.errors import OrcError

if TYPE_CHECKING:
    from tortoise.migrations.executor import MigrationExecutor

APP_LABEL = "orc"
MIGRATIONS_TABLE = "tortoise_migrations"
APPLIED_QUERY = 'SELECT "name" FROM "tortoise_migrations" WHERE "app" = ?'
APPLIED_QUERY_PG = 'SELECT "name" FROM "tortoise_migrations" WHERE "app" = $1'


class MigrationFailed(OrcError):
    """A migration could not be applied; the message names it and the cause."""

    code = "migration_failed"


def known_migrations() -> list[str]:
    """Names of the migrations shipped with this orc, oldest first."""
    return sorted(
        module.name
        for module in pkgutil.iter_modules(migrations_package.__path__)
        if module.name[:4].isdigit()
    )


async def applied_migrations() -> set[str]:
    """Names of migrations recorded as applied (empty for a new database)."""
    conn = default_connection()
    try:
        query = APPLIED_QUERY_PG if conn.capabilities.dialect == "postgres" else APPLIED_QUERY
        _, rows = await conn.execute_query(query, [APP_LABEL])
    except Exception as exc:
        if _is_missing_table(exc):
            return set()
        raise
    return {row["name"] for row in rows}


def _is_missing_table(exc: Exception) -> bool:
    text = str(exc).lower()
    return "no such table" in text or ("does not exist" in text and MIGRATIONS_TABLE in text)


def _executor(database: DatabaseUrl | str) -> MigrationExecutor:
    # Imported here: the API reads which migrations are applied but never migrates.
    from tortoise.migrations.executor import MigrationExecutor

    from orc.db.migration_state import use_schema_only_state

    use_schema_only_state()
    apps = DatabaseUrl.of(database).tortoise_config()["apps"]
    return MigrationExecutor(default_connection(), apps)


async def pending_migrations(database: DatabaseUrl | str) -> list[str]:
    """Migrations that ``apply_migrations`` would run, in order (needs an open database)."""
    steps = await _executor(database).plan()
    return [step.migration.name for step in steps if not step.backward]


async def apply_migrations(
    database: DatabaseUrl | str, progress: Callable[[str], object] | None = None
) -> list[str]:
    """Apply pending migrations, each in its own transaction; return the names applied."""
    executor = _executor(database)
    pending = [s.migration.name for s in await executor.plan() if not s.backward]
    current: list[str] = []

    def on_progress(event: str, app_label: str, name: str) -> None:
        if event == "apply_start":
            current[:] = [name]
            if progress is not None:
                progress(name)

    try:
        await executor.migrate(progress=on_progress)
    except Exception as exc:
        name = current[0] if current else "?"
        raise MigrationFailed(
            f"migration {APP_LABEL}.{name} failed ({type(exc).__name__}: {exc}); "
            "it was rolled back, the database is as before it"
        ) from exc
    return pending


async def migrate_database(
    database: DatabaseUrl | str,
    progress: Callable[[str], object] | None = None,
    dry_run: bool = False,
    before_migrating: Callable[[list[str]], Awaitable[object]] | None = None,
) -> list[str]:
    """Open the database, apply (or with ``dry_run`` only list) pending migrations, close it.

    Holds the migration lock so that servers starting together migrate once.
    ``before_migrating`` (the pre-migration backup) runs under the lock, only when migrations
    are pending on a database that has some applied already; if it raises, nothing is applied.
    """
    database = DatabaseUrl.of(database)
    await open_database(database)
    try:
        if dry_run:
            return await pending_migrations(database)
        async with migration_lock(database):
            if before_migrating is not None:
                pending = await pending_migrations(database)
                if pending and await applied_migrations():
                    await before_migrating(pending)
            return await apply_migrations(database, progress)
    finally:
        await close_database()
