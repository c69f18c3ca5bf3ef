"""Readiness follows the database: 503 while it is gone, 200 again when it is back, no restart.

The app runs in-process: readiness is the app's answer, not the process's."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import asyncpg

from tests.conftest import ADMIN_URL
from tests.support import base_env, free_port, run_orc


def _wait_for_status(server, status: int, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = server.get("/api/health/ready")
        if last.status_code == status:
            return last.json()
        time.sleep(0.2)
    raise AssertionError(f"readiness never became {status}; last: {last and last.text}")


async def _rename_database(old: str, new: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        # orc's pool holds connections to the database and reconnects at once; a rename needs
        # them gone, so new connections are refused first (else the rename races orc's retries).
        await conn.execute(f'ALTER DATABASE "{old}" ALLOW_CONNECTIONS false')
        await conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = $1", old
        )
        await conn.execute(f'ALTER DATABASE "{old}" RENAME TO "{new}"')
        await conn.execute(f'ALTER DATABASE "{new}" ALLOW_CONNECTIONS true')
    finally:
        await conn.close()


def test_readiness_turns_503_while_postgres_database_is_gone(
    app_factory, tmp_path, postgres_database
):
    env = base_env(tmp_path)
    env["DATABASE_URL"] = postgres_database
    name = urlsplit(postgres_database).path.lstrip("/")
    server = app_factory(env)
    assert _wait_for_status(server, 200)["checks"]["database"] == "ok"

    asyncio.run(_rename_database(name, name + "_away"))
    try:
        body = _wait_for_status(server, 503)
        assert body["status"] == "degraded"
        assert body["checks"]["database"].startswith("error")
        # Liveness does not depend on the database: Kubernetes must not restart us for this.
        assert server.get("/api/health").status_code == 200
    finally:
        asyncio.run(_rename_database(name + "_away", name))

    body = _wait_for_status(server, 200)
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] == "ok"


def test_serve_refuses_to_start_when_database_is_unreachable(tmp_path):
    """Nothing listens on the database's port: one clear line, exit code 1, no traceback."""
    env = base_env(tmp_path)
    env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{free_port()}/orc?sslmode=disable"
    result = run_orc(["serve", "--port", str(free_port())], env, timeout=30)
    assert result.returncode == 1
    assert "cannot open the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_readiness_reports_pending_migrations_as_degraded(app_factory, sqlite_env, tmp_path):
    server = app_factory(sqlite_env)
    assert _wait_for_status(server, 200)["checks"]["migrations"] == "ok"
    db_path = tmp_path / "home" / "orc.db"
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        conn.execute("DELETE FROM tortoise_migrations WHERE name = '0001_initial'")
    body = _wait_for_status(server, 503)
    assert body["checks"]["migrations"].startswith("pending: 0001_initial")

    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "INSERT INTO tortoise_migrations (app, name, applied_at) "
            "VALUES ('orc', '0001_initial', '2026-01-01T00:00:00+00:00'), "
            "('orc', '9999_from_the_future', '2026-01-01T00:00:00+00:00')"
        )
    body = _wait_for_status(server, 503)
    assert "9999_from_the_future" in body["checks"]["migrations"]
