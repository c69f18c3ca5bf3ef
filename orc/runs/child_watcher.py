"""Wait for child processes through pidfds, not one thread per child (Python 3.11).

The job worker starts about ten processes a task run (git, the agent's launcher). On Python
3.11 asyncio's default ``ThreadedChildWatcher`` starts a thread for each one, and the event
loop blocks until that thread has started; ``PidfdChildWatcher`` lets the loop itself watch a
pidfd instead. Measured in the worker during ``bench/run_overhead.py`` (cProfile, 21 runs):
190 processes started took 0.82 s of the loop's time, 0.38 s of it starting those threads; a
process started from an event loop alone, /bin/true: 0.61-0.68 ms of CPU with a thread, 0.35-0.40
ms with a pidfd. Python 3.12 and later use pidfds by themselves where the kernel has them.
"""

from __future__ import annotations

import asyncio
import os
import sys


def pidfds_work() -> bool:
    """Does this kernel (and its seccomp filter) give pidfds? Linux >= 5.3."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


def watch_children_by_pidfd(loop: asyncio.AbstractEventLoop) -> bool:
    """Let ``loop`` wait for the processes started from it through pidfds; whether the watcher
    changed. On Python 3.11 that watcher serves this one loop (a process started from another
    loop fails with "not activated"): the job worker runs every coroutine on its one loop, and
    ``restore_child_watcher`` puts asyncio's default back when that loop closes."""
    if sys.version_info >= (3, 12) or not pidfds_work():
        return False
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(loop)
    asyncio.set_child_watcher(watcher)
    return True


def restore_child_watcher() -> None:
    """asyncio's default watcher again (one waiting thread per process, any loop)."""
    if sys.version_info < (3, 12):
        asyncio.set_child_watcher(asyncio.ThreadedChildWatcher())
