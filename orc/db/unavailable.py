"""Telling "the database cannot be reached or is busy" apart from every other database error.

The API answers the first with 503 ``database_unavailable`` (try again later) rather than a 500:
the request was fine, the store was not there for it.
"""

from __future__ import annotations

import functools
import sqlite3
import sys

from tortoise.exceptions import DBConnectionError

# SQLite's primary result codes for a file that is locked, missing, unreadable or full.
_SQLITE_UNAVAILABLE = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_READONLY,
    }
)
_ALWAYS_UNAVAILABLE: tuple[type[BaseException], ...] = (
    DBConnectionError,
    ConnectionError,  # the server's port is closed or the connection was reset
)


@functools.cache
def _postgres_unavailable() -> tuple[type[BaseException], ...]:
    """PostgreSQL: the connection failed or was cut (class 08), the server is shutting down or
    starting (57), out of resources (53), or the database refuses connections (55000).

    Called once asyncpg is loaded (only PostgreSQL loads it: an API on SQLite saves ~3 MiB).
    """
    import asyncpg

    return (
        asyncpg.PostgresConnectionError,
        asyncpg.exceptions.OperatorInterventionError,
        asyncpg.exceptions.InsufficientResourcesError,
        asyncpg.exceptions.ObjectNotInPrerequisiteStateError,
        asyncpg.exceptions.InvalidCatalogNameError,
        asyncpg.InterfaceError,
        # What asyncpg raises on the first use of a pooled connection the server has just cut
        # (e.g. a PostgreSQL restart): "cannot switch to state …; another operation is in
        # progress".
        asyncpg.exceptions._base.InternalClientError,
        *_ALWAYS_UNAVAILABLE,
    )


def _unavailable(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _SQLITE_UNAVAILABLE
    if "asyncpg" not in sys.modules:  # then no asyncpg error can exist
        return isinstance(exc, _ALWAYS_UNAVAILABLE)
    return isinstance(exc, _postgres_unavailable())


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps: Tortoise re-raises driver errors) means the database
    cannot serve right now, as opposed to a query or data error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if _unavailable(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
