"""Tortoise's asyncpg engine, with transactions that a cancelled task cannot leave open.

Tortoise's pooled transaction takes a connection from the pool and then awaits ``BEGIN``;
when the task is cancelled (or ``BEGIN`` fails) between the two, ``__aexit__`` never runs and
the connection never goes back to the pool: each such cancel costs the pool one connection
for good, and orc cancels tasks on purpose (a phase past its timeout, a cancelled run). Here a
failed start gives the connection back; asyncpg's release rolls back an open transaction or
closes a connection left mid-command. The module's name must contain "asyncpg": Tortoise's
migrations pick their SQL dialect by the client class's module name.
"""

from __future__ import annotations

import asyncio

from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
from tortoise.backends.base.client import TransactionContext, TransactionContextPooled
from tortoise.connection import get_connections


class _SafeTransactionContext(TransactionContextPooled):
    """Tortoise's pooled transaction, its connection released when its start fails."""

    async def __aenter__(self) -> TransactionWrapper:
        await self.ensure_connection()
        pool = self.client._parent._pool
        self.client._connection = await pool.acquire()
        try:
            self.token = get_connections().set(self.connection_name, self.client)
            try:
                await self.client.begin()
            except BaseException:
                get_connections().reset(self.token)
                raise
        except BaseException:
            await asyncio.shield(pool.release(self.client._connection))
            raise
        return self.client  # type: ignore[return-value]


class CancelSafeAsyncpgClient(AsyncpgDBClient):
    """AsyncpgDBClient whose pooled connections a cancelled transaction cannot keep."""

    def _in_transaction(self) -> TransactionContext:
        return _SafeTransactionContext(TransactionWrapper(self), self._pool_init_lock)


client_class = CancelSafeAsyncpgClient
