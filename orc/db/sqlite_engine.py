"""Tortoise's SQLite engine, with transactions that a cancelled task cannot leave locked.

Tortoise's SQLite client serialises all work on its one connection with an ``asyncio.Lock``.
Its transaction takes that lock and then awaits the ``BEGIN``; when the task is cancelled (or
``BEGIN`` fails) between the two, ``__aexit__`` never runs and the lock is never released:
every later query of the process waits forever. orc cancels tasks on purpose (a phase past its
timeout, a cancelled run, the lease watcher at a run's end), so this happened: a run that timed
out could not record its end. Here a failed start rolls back what it began and releases the
lock. The module's name must contain "sqlite": Tortoise's migrations pick their SQL dialect by
the client class's module name.
"""

from __future__ import annotations

import asyncio
import contextlib

from tortoise.backends.base.client import ConnectionWrapper, TransactionContext
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.connection import get_connections


class _SafeConnectionWrapper(ConnectionWrapper):  # type: ignore[type-arg]
    """The connection lock for one query, released when opening the connection fails."""

    async def __aenter__(self) -> object:
        await self._lock.acquire()
        try:
            await self.ensure_connection()
        except BaseException:
            self._lock.release()
            raise
        return self.connection


class _SafeTransactionContext(SqliteTransactionContext):
    """Tortoise's transaction, undone and unlocked when its start is cancelled or fails."""

    async def __aenter__(self) -> SqliteTransactionWrapper:
        await self._trxlock.acquire()
        try:
            await self.ensure_connection()
            self.token = get_connections().set(self.connection_name, self.connection)
            try:
                await self.connection.begin()
            except BaseException:
                get_connections().reset(self.token)
                raise
        except BaseException:
            await self._abandon()
            raise
        return self.connection  # type: ignore[no-any-return]

    async def _abandon(self) -> None:
        """End what ``BEGIN`` may have started (a no-op when it did not), then unlock.
        aiosqlite runs the connection's calls in order, so the rollback comes after it."""
        try:
            connection = self.connection._connection
            if connection is not None:
                # The start's own error (or cancel) is the one to report.
                with contextlib.suppress(Exception):
                    await asyncio.shield(connection.rollback())
        finally:
            self._trxlock.release()


class CancelSafeSqliteClient(SqliteClient):
    """SqliteClient whose locks a cancelled task cannot keep."""

    def acquire_connection(self) -> ConnectionWrapper:  # type: ignore[type-arg]
        return _SafeConnectionWrapper(self._lock, self)

    def _in_transaction(self) -> TransactionContext:
        return _SafeTransactionContext(SqliteTransactionWrapper(self), self._lock)


client_class = CancelSafeSqliteClient
