"""The access log: one line per answered request, on the logger ``orc.access``.

The request's path only gathers the fields (a plain tuple, see ``Fields``). In ``orc serve``
the log writer's thread turns them into the line: straight into JSON when the output handler
has no filter but the secrets' redaction (``ACCESS.payload`` when no field can hold a secret,
else ``ACCESS.line_parts``, redacted), else through a ``LogRecord`` (``ACCESS.record``) like
any other line; without a writer, ``log_now`` logs the record at once. Probes are left out
unless ORC_ACCESS_LOG_PROBES is set: a load balancer or
Kubernetes hits them many times a minute. They are still counted in the metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

_LOGGER_NAME = "orc.access"
logger = logging.getLogger(_LOGGER_NAME)
PROBE_PATHS = frozenset({"/api/health", "/api/health/ready", "/api/metrics"})

# (created, request_id, method, path, route, status, seconds, remote, scheme): a plain tuple,
# which costs the request a fraction of a NamedTuple's construction.
Fields = tuple[float, str, str, str, str, int, float, str, str]


def _extra(f: Fields) -> dict[str, Any]:
    """The line's fields after time, level, logger and message (those of ``extra=``)."""
    payload = ACCESS.payload(f, str)
    for key in ("time", "level", "logger", "message"):
        del payload[key]
    return payload


class AccessLine:
    """How the log writer makes a line of access ``Fields`` (orc.runtime.logs.LineKind)."""

    level = logging.INFO

    def free_text(self, f: Fields) -> str:
        """The request id, method, path, route, client address and scheme, one per line."""
        return f"{f[1]}\n{f[2]}\n{f[3]}\n{f[4]}\n{f[7]}\n{f[8]}"

    def payload(self, f: Fields, iso: Callable[[float], str]) -> dict[str, Any]:
        """The JSON line's fields, as JsonFormatter orders those of ``line_parts``."""
        return {
            "time": iso(f[0]),
            "level": "info",
            "logger": _LOGGER_NAME,
            "message": f"{f[2]} {f[3]} {f[5]}",
            "request_id": f[1],
            "method": f[2],
            "path": f[3],
            "route": f[4],
            "status": f[5],
            "duration_ms": round(f[6] * 1000, 2),
            "remote": f[7],
            "scheme": f[8],
        }

    def line_parts(self, f: Fields) -> tuple[float, str, int, str, dict[str, Any]]:
        """Time, logger name, level, message (``METHOD PATH STATUS``) and extra fields."""
        return f[0], logger.name, logging.INFO, f"{f[2]} {f[3]} {f[5]}", _extra(f)

    def record(self, f: Fields) -> logging.LogRecord:
        """The same line as a log record, every field an extra."""
        created = f[0]
        record = logger.makeRecord(
            logger.name,
            logging.INFO,
            __file__,
            0,
            "%s %s %s",
            (f[2], f[3], f[5]),
            None,
            extra=_extra(f),
        )
        # When the request was answered, not when the writer got to it.
        record.created = created
        record.msecs = created % 1 * 1000
        record.relativeCreated = (created - logging._startTime) * 1000  # type: ignore[attr-defined]
        return record


ACCESS = AccessLine()


def log_now(f: Fields) -> None:
    """Log at once, through the logger's filters and handlers (no log writer in this process)."""
    record = ACCESS.record(f)
    if logger.filter(record):
        logger.handle(record)
