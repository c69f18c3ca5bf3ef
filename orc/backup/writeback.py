"""Start the disk writes of a file that is still being written, so its final fsync is short.

With gigabytes of RAM the kernel keeps a fresh 1 GiB copy in the page cache and writes
nothing until the fsync at the end, which then waits for every byte (about 10 s here). Linux's
``sync_file_range(SYNC_FILE_RANGE_WRITE)`` starts writing the dirty pages without waiting, so
the disk works while the copy goes on. Elsewhere this is a no-op and the fsync does it all.
"""

from __future__ import annotations

import ctypes
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

SYNC_FILE_RANGE_WRITE = 2


@cache
def _sync_file_range() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def start_writeback(path: Path) -> None:
    """Ask the kernel to start writing ``path``'s dirty pages to disk; does not wait for it."""
    function = _sync_file_range()
    if function is None:
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # not created yet, or already renamed: the fsync that follows covers it
    try:
        function(fd, 0, 0, SYNC_FILE_RANGE_WRITE)  # a failure only means a longer fsync
    finally:
        os.close(fd)
