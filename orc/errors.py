"""The root of orc's own errors: a status, a stable code and a message a person can act on.

The HTTP side turns an ``OrcError`` into ``{"error": code, "message": message}`` with its status
(``orc/api/error_handler.py``); the CLI prints its message on one line.
"""

from __future__ import annotations


class OrcError(Exception):
    """An error with a stable machine-readable ``code`` and the HTTP ``status`` it maps to."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ApiError(OrcError):
    """An error a client caused, raised by the HTTP layer."""
