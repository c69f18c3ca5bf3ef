"""One JSON error shape for every API error: ``{"error": code, "message": text}``."""

from __future__ import annotations

import logging
from http import HTTPStatus

from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.handlers import ErrorHandler
from sanic.response import HTTPResponse, json
from tortoise.exceptions import ValidationError as ModelValidationError

from orc.db.unavailable import is_database_unavailable
from orc.errors import OrcError

log = logging.getLogger("orc.errors")  # the logger's name is part of the log format
RETRY_AFTER_SECONDS = 5


def error_response(status: int, code: str, message: str) -> HTTPResponse:
    """The JSON body every error uses."""
    return json({"error": code, "message": message}, status=status)


def _code_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


class JsonErrorHandler(ErrorHandler):
    """Turns every exception into the JSON error shape; never leaks a traceback."""

    def default(self, request: Request, exception: Exception) -> HTTPResponse:
        if isinstance(exception, OrcError):
            if exception.status >= 500:
                log.warning("%s: %s", exception.code, exception.message)
            return error_response(exception.status, exception.code, exception.message)
        if isinstance(exception, ModelValidationError):
            # A value the client sent does not fit a column (Tortoise checks lengths and ranges
            # before the query): the database would refuse it too, or silently keep it on SQLite.
            return error_response(422, "validation_error", str(exception)[:300])
        if isinstance(exception, SanicException) and exception.status_code < 500:
            status = exception.status_code
            return error_response(status, _code_for(status), str(exception) or _code_for(status))
        request_id = getattr(request, "id", None) if request is not None else None
        if is_database_unavailable(exception):
            # One line: the database's state is the news, not this request's stack.
            log.warning(
                "database unavailable: %s: %s",
                type(exception).__name__,
                exception,
                extra={"request_id": str(request_id) if request_id else None},
            )
            response = error_response(
                503, "database_unavailable", "the database is unavailable; try again shortly"
            )
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        log.error(
            "unhandled error",
            exc_info=exception,
            extra={"request_id": str(request_id) if request_id else None},
        )
        return error_response(
            500, "internal_error", f"internal error; quote request id {request_id} when reporting"
        )


def install_error_handler(app: Sanic) -> None:
    """Make ``app`` answer every error with the JSON shape."""
    app.error_handler = JsonErrorHandler()
