"""Give the job worker's freed heap memory back to the system, once a minute.

The worker's event-loop thread allocates through its own glibc malloc arena (asyncpg's
connection resets at every release, the usage fold's statements). glibc keeps what is freed
there for reuse instead of returning it, so on a busy server the worker's RSS crept up by a few
hundred KiB a minute with no live object behind it (bench/README.md, issue 16: tracemalloc flat,
``malloc_trim(0)`` gave back 4.9 MiB). ``malloc_trim`` walks every arena and returns its free
pages; on a worker of about 40 MiB it takes 0.2 to 2 ms of the loop.

Only glibc has ``malloc_trim``; elsewhere (musl, macOS) trimming is off and nothing else changes.
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable

from workers.job_runtime import PeriodicLoop

TRIM_EVERY_SECONDS = 60.0


def _load_malloc_trim() -> Callable[[int], int] | None:
    # The process's own symbols, libc's among them (as orc.runtime.launcher finds prctl):
    # ctypes.util.find_library would run ldconfig at every worker start.
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except AttributeError:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_malloc_trim = _load_malloc_trim()


def release_free_heap() -> bool:
    """Return the free pages of every malloc arena to the system; False where libc cannot."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True


def start_heap_trims(every: float = TRIM_EVERY_SECONDS) -> PeriodicLoop | None:
    """Call ``release_free_heap`` every ``every`` seconds on the worker's loop until
    ``stop()``; None where libc cannot trim."""
    if _malloc_trim is None:
        return None

    async def trim_once(stopping: asyncio.Event) -> None:
        release_free_heap()

    return PeriodicLoop("heap trim", trim_once, every)
