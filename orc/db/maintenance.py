"""Statistics and dead rows of orc's PostgreSQL tables where autovacuum does not look after them.

PostgreSQL plans every query from table statistics that only ANALYZE gathers, and reuses the
space of deleted and updated rows only after VACUUM; autovacuum runs both. A cluster running
with ``autovacuum = off`` (or a table with ``autovacuum_enabled = false``) never gets either:
the planner guesses, and its guesses go wrong as the tables grow (the task list sorted the
whole table, the per-task usage scanned every usage event), so orc slowed down by the hour.
For those tables the job worker does what autovacuum would, by autovacuum's own thresholds
read from the cluster's settings, once a minute. ``SKIP_LOCKED``: a table another replica's
worker (or anyone) is vacuuming is left for the next round, never waited for.

SQLite needs none of this: its planner trusts indexes without statistics, and its file reuses
freed pages by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from orc.db.sql import fetch, is_postgres

_SETTINGS = (
    "autovacuum",
    "autovacuum_analyze_threshold",
    "autovacuum_analyze_scale_factor",
    "autovacuum_vacuum_threshold",
    "autovacuum_vacuum_scale_factor",
    "autovacuum_vacuum_insert_threshold",
    "autovacuum_vacuum_insert_scale_factor",
)
_TABLES = """
SELECT s.relname AS name, GREATEST(c.reltuples, 0) AS tuples, s.n_dead_tup AS dead,
       s.n_mod_since_analyze AS changed, s.n_ins_since_vacuum AS inserted,
       COALESCE(c.reloptions, '{}') AS options
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = current_schema()
ORDER BY s.relname
"""
_OFF = frozenset({"false", "off", "no", "0"})


@dataclass(frozen=True)
class Upkeep:
    """What one round did: the tables analyzed (``VACUUM (ANALYZE)`` for those with enough
    dead or new rows to vacuum too) and whether autovacuum is off for the whole cluster."""

    analyzed: list[str]
    vacuumed: list[str]
    cluster_autovacuum: bool


def _autovacuum_disabled(options: list[str]) -> bool:
    """Whether a table's storage options turn autovacuum off for it."""
    for option in options:
        name, _, value = option.partition("=")
        if name == "autovacuum_enabled" and value.lower() in _OFF:
            return True
    return False


def _due(table: Any, limits: dict[str, float]) -> tuple[bool, bool]:
    """(vacuum, analyze) as autovacuum decides them for this table."""
    tuples = float(table["tuples"])

    def over(count: Any, kind: str) -> bool:
        threshold = limits[f"autovacuum_{kind}_threshold"]
        scale = limits[f"autovacuum_{kind}_scale_factor"]
        return float(count or 0) > threshold + scale * tuples

    vacuum = over(table["dead"], "vacuum") or over(table["inserted"], "vacuum_insert")
    return vacuum, over(table["changed"], "analyze")


async def keep_tables_planned(conn: BaseDBAsyncClient | None = None) -> Upkeep | None:
    """Analyze (and vacuum) the tables autovacuum leaves alone and would have taken by now;
    None on SQLite."""
    if conn is None:
        from orc.db import default_connection

        conn = default_connection()
    if not is_postgres(conn):
        return None
    rows = await fetch(
        conn,
        "SELECT name, setting FROM pg_settings WHERE name = ANY(?)",
        [list(_SETTINGS)],
    )
    settings = {row["name"]: row["setting"] for row in rows}
    cluster = settings.pop("autovacuum") == "on"
    limits = {name: float(value) for name, value in settings.items()}
    analyzed: list[str] = []
    vacuumed: list[str] = []
    for table in await fetch(conn, _TABLES):
        if cluster and not _autovacuum_disabled(list(table["options"])):
            continue
        vacuum, analyze = _due(table, limits)
        if not (vacuum or analyze):
            continue
        name = str(table["name"]).replace('"', '""')
        # Outside a transaction (VACUUM refuses to run in one): the pool's own connection.
        command = "VACUUM (ANALYZE, SKIP_LOCKED)" if vacuum else "ANALYZE (SKIP_LOCKED)"
        await conn.execute_script(f'{command} "{name}"')
        analyzed.append(table["name"])
        if vacuum:
            vacuumed.append(table["name"])
    return Upkeep(analyzed, vacuumed, cluster)
