"""The API process's start gate: ``orc serve`` starts it before migrating, held here.

The launcher passes the read end of a pipe in ORC_API_GATE_FD (internal, set only by the
launcher). The API imports everything first, then waits: one byte means the database is
migrated and the auth prepared, so go on; end of file means start-up failed or was stopped,
so exit without a word.
"""

from __future__ import annotations

import os

API_GATE_ENV = "ORC_API_GATE_FD"


def wait_at_gate() -> bool:
    """Block until the launcher releases this process; False when it never will. True at once
    when there is no gate (``orc _api`` started by something else)."""
    fd = os.environ.pop(API_GATE_ENV, None)
    if fd is None:
        return True
    try:
        number = int(fd)
        released = os.read(number, 1) == b"1"
        os.close(number)
    except (OSError, ValueError):
        return False
    return released
