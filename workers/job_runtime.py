"""What every job runs with: the worker's settings, and one event loop with the database open.

Huey runs jobs in plain threads; our data layer is async. Every job hands its coroutine to
this one loop, so the process keeps one set of database connections. ``run_consumer`` sets
the settings once (``start_runtime``); jobs never read the configuration themselves.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from orc.config import Settings
from orc.db import close_database, describe_error, open_database
from orc.db.unavailable import is_database_unavailable
from orc.runs.child_watcher import restore_child_watcher, watch_children_by_pidfd

T = TypeVar("T")
log = logging.getLogger("orc.worker")


class AsyncRuntime:
    """A running event loop with Tortoise initialised on it."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="orc-jobs-loop", daemon=True
        )
        self.watches_children = False

    def start(self) -> None:
        # The runs' git and agent processes are started from this loop: waited for through
        # pidfds, not a thread each (orc.runs.child_watcher).
        self.watches_children = watch_children_by_pidfd(self.loop)
        self.thread.start()
        self.run(open_database(self.database_url))

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result (cancelled when it times out)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        self.run(close_database(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if self.watches_children:
            restore_child_watcher()


_settings: Settings | None = None
_runtime: AsyncRuntime | None = None
_runtime_lock = threading.Lock()


def start_runtime(settings: Settings) -> None:
    """Give jobs the worker's settings; the database opens when the first job needs it."""
    global _settings
    with _runtime_lock:
        _settings = settings


def job_settings() -> Settings:
    """The settings the worker was started with."""
    if _settings is None:
        raise RuntimeError("jobs run in the worker: call start_runtime(settings) first")
    return _settings


def _started_runtime(coro: Coroutine[Any, Any, Any]) -> AsyncRuntime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            try:
                database_url = job_settings().database_url
            except RuntimeError:
                coro.close()  # never awaited, and Python would say so
                raise
            runtime = AsyncRuntime(database_url)
            runtime.start()
            _runtime = runtime
        return _runtime


def run_async(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run a job's coroutine on the shared runtime, starting it on first use."""
    return _started_runtime(coro).run(coro, timeout)


def spawn(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Start a long-lived coroutine (the run loop) on the shared runtime; do not wait."""
    return asyncio.run_coroutine_threadsafe(coro, _started_runtime(coro).loop)


def set_event(event: asyncio.Event) -> None:
    """Set, from another thread, an event that a coroutine on the shared runtime waits on."""
    with _runtime_lock:
        runtime = _runtime
    if runtime is None:
        event.set()  # nothing waits on it: no loop runs
    else:
        runtime.loop.call_soon_threadsafe(event.set)


def close_runtime() -> None:
    """Close the shared runtime's connections and stop its loop (at consumer exit)."""
    global _runtime
    with _runtime_lock:
        if _runtime is not None:
            _runtime.close()
            _runtime = None


class PeriodicLoop:
    """Runs ``tick(stopping)`` on the shared runtime at once and then every ``every`` seconds,
    until ``stop()``.

    For the chores every worker process must do itself (fold usage, trim its heap): a Huey
    periodic task runs in whichever consumer takes it, so with several consumers on one queue
    some would never run it. ``tick`` is handed the stopping event so a long one can end early.
    """

    def __init__(
        self,
        name: str,
        tick: Callable[[asyncio.Event], Awaitable[None]],
        every: float,
        stop_timeout: float = 5.0,
    ) -> None:
        self.name = name
        self.every = every
        self.stop_timeout = stop_timeout
        self._tick = tick
        self._stopping = asyncio.Event()
        self.future: concurrent.futures.Future[None] = spawn(self._tick_until_stopped())

    async def _tick_until_stopped(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._tick(self._stopping)
            except Exception as exc:
                # One failed round must not end the chore for the life of the worker. As the run
                # loop does: a database that is away (down, a full disk) one line a round until it
                # is back; anything else with its traceback.
                if is_database_unavailable(exc):
                    log.warning("the %s failed: %s", self.name, describe_error(exc))
                else:
                    log.warning("the %s failed", self.name, exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.every)

    def stop(self) -> None:
        """Let a tick in progress end, then return; cancel it if it does not end within
        ``stop_timeout`` seconds."""
        set_event(self._stopping)
        try:
            self.future.result(self.stop_timeout)
        except concurrent.futures.TimeoutError:
            log.warning("the %s did not end in %g s: cancelled", self.name, self.stop_timeout)
            self.future.cancel()
        except Exception:
            log.warning("the %s did not stop cleanly", self.name, exc_info=True)
