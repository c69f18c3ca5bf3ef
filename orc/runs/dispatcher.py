"""The job worker's run loop: claim queued runs up to the limit and execute them.

Runs are long (minutes to hours), so they do not occupy Huey's job threads: this loop runs on
the worker's event loop beside them. When the worker stops, runs in flight are interrupted
(the agent's process group is killed) and handed back to the queue; the next worker resumes
their phase's session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from orc.db import describe_error
from orc.db.unavailable import is_database_unavailable
from orc.db.url import DatabaseUrl
from orc.runs.claims import (
    Claim,
    claim_next_run,
    has_claimable_run,
    release_dead_local_leases,
    requeue_run,
)
from orc.runs.engine import RunExecution, RunPolicy
from orc.runs.new_work import NewWorkSignal
from orc.runs.workspace_cleanup import sweep_workspaces

log = logging.getLogger("orc.runs")
POLL_SECONDS = 1.0
# How often the worker removes what completed and deleted tasks left on its disk (and once at
# start): a run that completes removes its own at once, so this finds little.
SWEEP_SECONDS = 3600.0


class Dispatcher:
    """Claims and executes runs until ``stop()``."""

    def __init__(
        self,
        policy: RunPolicy,
        owner: str,
        max_running: int,
        database: DatabaseUrl | None = None,
    ) -> None:
        """``owner`` is ``worker_owner()``'s ``hostname:pid:start``: a worker of the same host
        recognises a dead one's. With ``database``, a change in it (a run queued) wakes the
        loop before its poll."""
        self.policy = policy
        self.database = database
        self.owner = owner
        self.hostname = owner.partition(":")[0]
        self.max_running = max_running
        self.running: dict[asyncio.Task[str], Claim] = {}
        self._stopping = asyncio.Event()
        # Set when one of our runs ends (its slot is free) or the database changed (a run may
        # have been queued): claim now, not at the next poll.
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_sweep = 0.0
        self._next_lease_check = 0.0

    async def run_forever(self) -> None:
        self._loop = asyncio.get_running_loop()
        new_work = NewWorkSignal(self.database, self._wake) if self.database else None
        if new_work is not None:
            await new_work.start()
        try:
            await self._loop_until_stopped()
        finally:
            if new_work is not None:
                await new_work.close()
        await self._interrupt_all()

    async def _loop_until_stopped(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                await self._claim_what_fits()
            except Exception as exc:
                if is_database_unavailable(exc):  # e.g. a full disk: one line, not a traceback
                    log.warning("could not claim runs: %s", describe_error(exc))
                else:
                    log.warning("could not claim runs", exc_info=True)
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + SWEEP_SECONDS
                await self._sweep()
            await self._pause()

    async def _sweep(self) -> None:
        """Remove finished tasks' worktrees; inline, so no run is claimed meanwhile (a new run
        of a task makes its worktree again after the sweep)."""
        busy = {claim.task_number for claim in self.running.values()}
        try:
            await sweep_workspaces(self.policy.home, busy)
        except Exception:
            log.warning("could not remove finished tasks' worktrees", exc_info=True)

    async def _pause(self) -> None:
        """Until the next poll, or sooner: when a run of ours ends or one may have been queued
        (either would wait up to a poll interval; bench/run_overhead.py) or the worker stops."""
        waiters = {
            asyncio.create_task(self._stopping.wait()),
            asyncio.create_task(self._wake.wait()),
        }
        try:
            await asyncio.wait(waiters, timeout=POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _claim_what_fits(self) -> None:
        for done in [task for task in self.running if task.done()]:
            self.running.pop(done)
        # Never one of ours still executing (its lease can run out while its end is being
        # recorded, e.g. on a full disk).
        mine = {claim.run_id for claim in self.running.values()}
        # At most once a poll interval, not at every wake: on SQLite each write of the database
        # wakes the loop (each message of a running agent), and this query was a fifth of the
        # worker's CPU during runs (py-spy, bench/run_overhead.py).
        if time.monotonic() >= self._next_lease_check:
            self._next_lease_check = time.monotonic() + POLL_SECONDS
            released = await release_dead_local_leases(
                self.hostname, owner=self.owner, executing=mine
            )
            if released:
                log.info("took back %d run(s) of a worker of this host that died", released)
        # Woken by every write of the database: look before taking the change lock.
        if len(self.running) < self.max_running and not await has_claimable_run(exclude=mine):
            return
        while len(self.running) < self.max_running:
            claim = await claim_next_run(self.owner, self.max_running, exclude=mine)
            if claim is None:
                return
            log.info(
                "run %s of TASK-%03d claimed%s",
                claim.run_id,
                claim.task_number,
                " (resuming)" if claim.resumed else "",
            )
            task = asyncio.create_task(RunExecution(claim, self.policy).execute())
            task.add_done_callback(lambda _: self._wake.set())
            self.running[task] = claim

    async def _interrupt_all(self) -> None:
        for task, claim in list(self.running.items()):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                await requeue_run(
                    claim, "the job worker stopped; the run continues when it is back"
                )
        self.running.clear()

    def stop(self) -> None:
        self._stopping.set()

    def stop_threadsafe(self) -> None:
        """``stop()`` from another thread (the consumer's, at shutdown)."""
        if self._loop is None:
            self._stopping.set()
        else:
            self._loop.call_soon_threadsafe(self._stopping.set)
