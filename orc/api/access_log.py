"""The access log: one line per answered request, on the logger ``orc.access``.

The request's path only gathers the fields (a tuple). In ``orc serve`` the log writer's thread
turns them into the line: straight into JSON (``line_parts``) when the output handler has no
filter but the secrets' redaction, else through a ``LogRecord`` (``record``) like any other
line; without a writer, ``log_now`` logs the record at once. Probes are left out unless
ORC_ACCESS_LOG_PROBES is set: a load balancer or Kubernetes hits them many times a minute.
They are still counted in the metrics.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

logger = logging.getLogger("orc.access")
PROBE_PATHS = frozenset({"/api/health", "/api/health/ready", "/api/metrics"})


class AccessFields(NamedTuple):
    """One answered request; ``created`` is when it was answered."""

    created: float
    request_id: str
    method: str
    path: str
    route: str
    status: int
    duration_ms: float
    remote: str
    scheme: str

    def line_parts(self) -> tuple[str, int, str, dict[str, Any]]:
        """Logger name, level, message and extra fields: what the writer formats directly."""
        extra = {
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "route": self.route,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "remote": self.remote,
            "scheme": self.scheme,
        }
        return logger.name, logging.INFO, f"{self.method} {self.path} {self.status}", extra

    def record(self) -> logging.LogRecord:
        """The log record of the request: ``METHOD PATH STATUS`` plus every field as an extra."""
        extra = self._asdict()
        created = extra.pop("created")
        record = logger.makeRecord(
            logger.name,
            logging.INFO,
            __file__,
            0,
            "%s %s %s",
            (self.method, self.path, self.status),
            None,
            extra=extra,
        )
        # When the request was answered, not when the writer got to it.
        record.created = created
        record.msecs = created % 1 * 1000
        record.relativeCreated = (created - logging._startTime) * 1000  # type: ignore[attr-defined]
        return record


def log_now(fields: AccessFields) -> None:
    """Log at once, through the logger's filters and handlers (no log writer in this process)."""
    record = fields.record()
    if logger.filter(record):
        logger.handle(record)
