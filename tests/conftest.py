"""Shared fixtures: a database per test on SQLite and on PostgreSQL, the app in-process, and real
`orc serve` processes for the tests where the process is the point.

PostgreSQL is required (it is in CI): a test that needs it fails, never skips, when it is down.
Point ORC_TEST_POSTGRES_URL at another server if 127.0.0.1:5432 is not yours.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest
from sanic import Sanic

from tests.api_client import Api
from tests.docker_support import dockerd, images  # noqa: F401 (image tests' session fixtures)
from tests.in_process import LiveApp
from tests.schema_template import SchemaTemplates, run_apart
from tests.support import OrcServer, base_env

ADMIN_URL = os.environ.get("ORC_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")

Sanic.test_mode = True


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the tests marked `slow` first: under xdist (scripts/test) each worker takes the next
    test from the front, so a minute-long wait that starts early overlaps the rest of the suite
    instead of running alone at its end; `slow(seconds=N)` puts the longest first. The order is the
    same in every worker, as xdist needs. The tests of an `xdist_group` (the image tests, the
    container rehearsal) start before all of these: `--dist loadgroup` hands out the largest
    groups first (xdist's default `--loadscope-reorder`), so each runs beside the rest."""

    def start_rank(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        return 0.0 if marker is None else -float(marker.kwargs.get("seconds", 30))

    items.sort(key=start_rank)


def _admin_url_for(database: str) -> str:
    head, _, _ = ADMIN_URL.rpartition("/")
    return f"{head}/{database}"


async def _admin_execute(sql: str) -> None:
    try:
        conn = await asyncpg.connect(ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL at {ADMIN_URL} is required for these tests and is unreachable ({exc}); "
            "start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _database_url_for(name: str) -> str:
    return _admin_url_for(name) + "?sslmode=disable"


class _BackgroundDrops:
    """Drops test databases on one thread of their own: DROP DATABASE waits for a checkpoint
    (about a second on a busy machine), which the next test has no reason to wait for."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="drop-database")
        self._drops: list[Future[None]] = []

    def drop(self, name: str) -> None:
        sql = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        self._drops.append(self._pool.submit(lambda: asyncio.run(_admin_execute(sql))))

    def wait(self) -> None:
        """Wait for every drop; a failed one fails here."""
        self._pool.shutdown(wait=True)
        for drop in self._drops:
            drop.result()


@pytest.fixture(scope="session")
def database_drops() -> Iterator[_BackgroundDrops]:
    drops = _BackgroundDrops()
    yield drops
    drops.wait()


def _new_postgres_database(drops: _BackgroundDrops, template: str | None = None) -> Iterator[str]:
    name = f"orc_test_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    run_apart(_admin_execute(f'CREATE DATABASE "{name}"{copy}'))
    try:
        yield _database_url_for(name)
    finally:
        drops.drop(name)


@pytest.fixture
def postgres_database(database_drops: _BackgroundDrops) -> Iterator[str]:
    """A fresh, empty PostgreSQL database; dropped afterwards. Yields its URL."""
    yield from _new_postgres_database(database_drops)


@pytest.fixture(scope="session")
def schema_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchemaTemplates]:
    """orc's schema migrated once in this test process, for ``database_url`` to copy."""
    templates = SchemaTemplates(
        tmp_path_factory.mktemp("schema"), _admin_execute, _database_url_for
    )
    yield templates
    templates.close()


@pytest.fixture
def migrated() -> None:
    """Asks ``database_url`` and ``sqlite_env`` for orc's schema in place (copied from a
    template): for fixtures that would migrate the database before the test body runs anyway
    (``store``, ``live_app``), and for tests whose first orc command or server would migrate a
    fresh database when migrating is not what they test (it costs an orc process ~0.7 s of CPU)."""


@pytest.fixture
def migrated_postgres_database(
    schema_templates: SchemaTemplates, database_drops: _BackgroundDrops
) -> Iterator[str]:
    """A fresh PostgreSQL database holding orc's schema; dropped afterwards. Yields its URL."""
    yield from _new_postgres_database(database_drops, schema_templates.postgres_template())


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every test that uses this runs twice: on SQLite and on PostgreSQL. The database is
    empty, unless the test also uses ``migrated``: then it holds orc's schema already."""
    with_schema = "migrated" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "home" / "orc.db"
        if with_schema:
            request.getfixturevalue("schema_templates").copy_sqlite(path)
        return f"sqlite://{path}"
    if with_schema:
        return request.getfixturevalue("migrated_postgres_database")
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def orc_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """Environment for an orc process isolated in tmp_path, on the parametrised database."""
    env = base_env(tmp_path)
    env["DATABASE_URL"] = database_url
    return env


@pytest.fixture
def sqlite_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Environment for an orc process on its own SQLite database (tests of process handling).
    The database does not exist yet, unless the test also uses ``migrated``: then it holds
    orc's schema already (as for ``database_url``)."""
    env = base_env(tmp_path)
    if "migrated" in request.fixturenames:
        request.getfixturevalue("schema_templates").copy_sqlite(Path(env["ORC_HOME"]) / "orc.db")
    return env


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[type[OrcServer]]:
    """Start `orc serve` processes that are always stopped (killed if need be) after the test."""
    started: list[OrcServer] = []

    class TrackedServer(OrcServer):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield TrackedServer
    for server in started:
        server.kill()


@pytest.fixture
def app_factory() -> Iterator[Callable[..., LiveApp]]:
    """Start the app in-process from an orc environment (plus ``extra`` variables); closed after."""
    started: list[LiveApp] = []

    def start(env: dict[str, str], **extra: str) -> LiveApp:
        live = LiveApp({**env, **extra}, cwd=Path(env["HOME"]))
        started.append(live)
        return live

    yield start
    for live in started:
        live.close()


@pytest.fixture
def live_app(
    app_factory: Callable[..., LiveApp], migrated: None, orc_env: dict[str, str]
) -> LiveApp:
    """The app in-process on the parametrised database, migrated and started."""
    return app_factory(orc_env)


@pytest.fixture
def api(live_app: LiveApp, repo: Path) -> Api:
    """The task API of an in-process app on the parametrised database, with one project
    registered (so tasks made without naming one belong to it and can run)."""
    client = Api(live_app)
    client.ok(client.http.post("/api/projects", json={"path": str(repo)}), 201)
    return client


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Debian's chromium driven by Playwright, one per test module (the sync API owns a loop)."""
    from playwright.sync_api import expect, sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS, EXPECT_MS

    expect.set_options(timeout=EXPECT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
async def store(migrated: None, database_url: str) -> AsyncIterator[str]:
    """A migrated database on the parametrised backend, open in this process; yields its URL."""
    from tortoise.backends.base.executor import EXECUTOR_CACHE

    from orc.db import close_database, open_database

    # Tortoise caches SQL per connection name, not per dialect: start and end clean.
    EXECUTOR_CACHE.clear()
    await open_database(database_url)
    try:
        yield database_url
    finally:
        await close_database()
        EXECUTOR_CACHE.clear()


@pytest.fixture
def fake() -> Iterator[object]:
    """The fake Anthropic API on loopback (the real Claude Code CLI talks to it)."""
    from tests.fake_anthropic import FakeAnthropic

    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit on main, named shop."""
    import subprocess

    path = tmp_path / "shop"
    path.mkdir()
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "Dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
    }
    (path / "README.md").write_text("# shop\n")
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "start"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, env=env)
    return path
