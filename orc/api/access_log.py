"""The access log: one line per answered request, on the logger ``orc.access``.

The request's path only gathers the fields (a tuple); ``make_record`` turns them into a
``LogRecord``, in the log writer's thread when the process has one (``orc serve``), else at
once. Probes are left out unless ORC_ACCESS_LOG_PROBES is set: a load balancer or Kubernetes
hits them many times a minute. They are still counted in the metrics.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

logger = logging.getLogger("orc.access")
PROBE_PATHS = frozenset({"/api/health", "/api/health/ready", "/api/metrics"})


class AccessFields(NamedTuple):
    created: float
    request_id: str
    method: str
    path: str
    route: str
    status: int
    duration_ms: float
    remote: str
    scheme: str


def make_record(fields: AccessFields) -> logging.LogRecord:
    """The log record of one request: ``METHOD PATH STATUS`` plus every field as an extra."""
    extra = fields._asdict()
    created = extra.pop("created")
    record = logger.makeRecord(
        logger.name,
        logging.INFO,
        __file__,
        0,
        "%s %s %s",
        (fields.method, fields.path, fields.status),
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
    record = make_record(fields)
    if logger.filter(record):
        logger.handle(record)
