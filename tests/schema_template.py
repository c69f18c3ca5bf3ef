"""orc's schema migrated once per test process and copied into each test database that wants it.

Migrating a new database costs about 0.5 s of CPU, and several seconds of wall time on a loaded
machine (each migration is its own transaction, PostgreSQL's DDL syncs to disk); copying a
migrated one costs a file copy on SQLite and a `CREATE DATABASE … TEMPLATE` on PostgreSQL. The
tests of migrating itself (tests/test_migrations.py, `orc migrate`, a server's first start) keep
starting from empty databases: only fixtures that would migrate before the test body runs
(``store``, ``live_app``) ask for a copy.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from orc.db.schema import migrate_database

T = TypeVar("T")


def run_apart(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a thread of its own, for sync fixtures: the test that asks for one
    first may already have an event loop running on this thread (an async fixture's, or the
    one Playwright's sync API runs for the browser tests), where ``asyncio.run`` refuses."""
    with ThreadPoolExecutor(1, thread_name_prefix="fixture-loop") as pool:
        return pool.submit(asyncio.run, coroutine).result()


class SchemaTemplates:
    """One migrated SQLite file and one migrated PostgreSQL database. The SQLite one is made at
    once, so that copying it never needs an event loop (async tests copy it too); the PostgreSQL
    one on first use."""

    def __init__(
        self,
        folder: Path,
        admin: Callable[[str], Awaitable[None]],
        url_for: Callable[[str], str],
    ) -> None:
        self.folder = folder
        self.admin = admin
        self.url_for = url_for
        self._postgres: str | None = None
        self._sqlite = folder / "template.db"
        run_apart(migrate_database(f"sqlite://{self._sqlite}"))
        # Closed cleanly: everything is in the main file, no -wal or -shm left beside it.
        assert sorted(p.name for p in folder.glob("template.db*")) == [
            "template.db",
            "template.db.migrate.lock",
        ]

    def copy_sqlite(self, path: Path) -> None:
        """Put a migrated database at ``path`` (owner-only, as orc leaves its own)."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copy2(self._sqlite, path)

    def postgres_template(self) -> str:
        """The name of the migrated PostgreSQL database to copy (nothing stays connected to it)."""
        if self._postgres is None:
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            name = f"orc_template_{worker}_{uuid.uuid4().hex[:8]}"
            run_apart(self.admin(f'CREATE DATABASE "{name}"'))
            run_apart(migrate_database(self.url_for(name)))
            self._postgres = name
        return self._postgres

    def close(self) -> None:
        if self._postgres is not None:
            run_apart(self.admin(f'DROP DATABASE IF EXISTS "{self._postgres}" WITH (FORCE)'))
