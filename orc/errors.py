"""The root of orc's own errors: a status, a stable code and a message a person can act on.

Every domain error derives from ``OrcError`` and states, as class attributes, the HTTP
``status`` and ``code`` it answers with and the CLI's ``exit_code``. The HTTP side turns it into
``{"error": code, "message": message}`` with its status (``orc/api/error_handler.py``); the CLI
prints ``orc: error: message`` and exits with its code (``orc/cli/main.py``). Nothing else
translates them.
"""

from __future__ import annotations

EXIT_FAILED = 1  # a failure at run time
EXIT_USAGE = 2  # bad usage or configuration: the user can fix the command or the settings


class OrcError(Exception):
    """An error with a stable machine-readable ``code``, its HTTP ``status`` and CLI exit code."""

    status = 500
    code = "internal_error"
    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiError(OrcError):
    """An error a client caused, raised by the HTTP layer with its own status and code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.exit_code = EXIT_USAGE if status < 500 else EXIT_FAILED
