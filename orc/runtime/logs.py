"""Logging set-up: JSON (one object per line) or text, per ORC_LOG_FORMAT, written off the caller.

A logging call only puts its record on a queue (a few microseconds); one writer thread per
process formats the records and writes each batch with one call, so a busy or blocked stderr
never holds up a request. Records keep their order, and ``stop_writer`` (run at exit) writes
every queued one before the process ends.

Filters apply as usual: on a logger or on the root handler (``QueueHandler``) they run in the
caller, on the output handler (``output_handler()``) in the writer thread, before formatting.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from logging.handlers import QueueHandler
from typing import Any, Protocol, TextIO

import orjson

from orc.runtime.redact import RedactSecrets

# Sanic's own loggers; they get our handler so every line has one format.
SANIC_LOGGERS = ("sanic.root", "sanic.error", "sanic.access", "sanic.server", "sanic.websockets")
# Libraries that log a traceback for a condition orc reports itself (asyncpg's pool retrying a
# connection while PostgreSQL is down: requests answer 503 and readiness says so).
ONE_LINE_LOGGERS = ("asyncpg.pool",)
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
# Records written per call at most: bounds the text held in memory while a batch is written.
MAX_BATCH = 512
# How often the writer thread wakes to write what was logged meanwhile.
FLUSH_SECONDS = 0.1


class LineKind(Protocol):
    """How the writer makes the line of a ``Deferred``'s fields (see orc.api.access_log)."""

    level: int

    def free_text(self, fields: Any) -> str:
        """Every string of ``fields`` that came from outside (a client), in one string: when
        no secret can be in it, the line skips the redaction of its fields one by one."""
        ...

    def payload(self, fields: Any, iso: Callable[[float], str]) -> dict[str, Any]:
        """The whole JSON line (its time written by ``iso``): what ``line_parts`` makes, in the
        JSON formatter's order, in one dict."""
        ...

    def line_parts(self, fields: Any) -> tuple[float, str, int, str, dict[str, Any]]:
        """Time, logger name, level, message, extra fields: what the JSON formatter writes."""
        ...

    def record(self, fields: Any) -> logging.LogRecord:
        """The same line as a log record, for a text format or another filter."""
        ...


# A line handed to the writer as plain fields (an access line): the request's path only
# builds a tuple; the writer formats it straight to JSON, or makes a LogRecord of it when the
# output handler needs one (a text format, a filter other than the redaction).
Deferred = tuple[LineKind, Any]


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}


# ".000+00:00" to ".999+00:00": a time's end is looked up, not formatted, on every line.
_MILLISECOND_ENDS = tuple(f".{ms:03d}+00:00" for ms in range(1000))


class _UtcClock:
    """ISO 8601 times in UTC with milliseconds; the seconds part is formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def iso(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return self._prefix + _MILLISECOND_ENDS[int((created - second) * 1000)]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _UtcClock()

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": self._clock.iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(_extra_fields(record))
        if record.exc_info:
            # exc_text is the traceback as the redaction filter left it.
            payload["exception"] = record.exc_text or self.formatException(record.exc_info)
        return _dumps(payload)

    @property
    def iso_time(self) -> Callable[[float], str]:
        """Writes a time as the ``time`` field does."""
        return self._clock.iso

    def format_parts(
        self, created: float, name: str, level: int, message: str, extra: dict[str, Any]
    ) -> str:
        """The line of a ``Deferred`` (the same keys, in the same order, as ``format``)."""
        payload: dict[str, Any] = {
            "time": self._clock.iso(created),
            "level": _LEVEL_NAMES.get(level) or logging.getLevelName(level).lower(),
            "logger": name,
            "message": message,
        }
        payload.update(extra)
        return _dumps(payload)


_LEVEL_NAMES = {level: logging.getLevelName(level).lower() for level in range(0, 60, 10)}


def _dumps(payload: dict[str, Any]) -> str:
    try:
        return orjson.dumps(payload, default=str).decode()
    except TypeError:  # what orjson refuses (non-str keys, huge ints): the slow way
        import json

        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{k}={v}" for k, v in _extra_fields(record).items())
        return f"{line} {extras}" if extras else line


class BatchStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that, while the writer collects a batch, keeps lines for one write."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.pending: list[str] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.pending is None:
            super().emit(record)
            return
        try:
            self.pending.append(self.format(record))
        except Exception:
            self.handleError(record)

    def locked_write(self, items: list[logging.LogRecord | Deferred]) -> None:
        """Filter, format and write ``items`` with one write."""
        self.acquire()
        try:
            self._write_batch(items)
        finally:
            self.release()

    def _direct(self) -> bool:
        """Whether a ``Deferred`` can skip its LogRecord: JSON, and no filter but redaction."""
        return isinstance(self.formatter, JsonFormatter) and all(
            isinstance(f, RedactSecrets) for f in self.filters
        )

    def _write_batch(self, items: list[logging.LogRecord | Deferred]) -> None:
        self.pending = []
        pending = self.pending
        direct = self._direct()
        if direct:
            formatter: JsonFormatter = self.formatter  # type: ignore[assignment]
            iso = formatter.iso_time
            clean = _all_clean([f.is_clean for f in self.filters])  # type: ignore[union-attr]
        try:
            for item in items:
                if isinstance(item, logging.LogRecord):
                    if item.levelno >= self.level:
                        self.handle(item)
                elif not direct:
                    record = _record_of(*item)
                    if record is not None and record.levelno >= self.level:
                        self.handle(record)
                elif item[0].level >= self.level:
                    # Most lines: nothing to redact in them, one dict, one encoding.
                    kind, fields = item
                    try:
                        text = kind.free_text(fields)
                        if clean(text):
                            pending.append(_dumps(kind.payload(fields, iso)))
                            continue
                    except Exception:
                        logging.getLogger(__name__).exception("cannot format a log line")
                        continue
                    self._append_redacted(item, pending)
            if pending:
                self.stream.write("\n".join(pending) + "\n")
                self.stream.flush()
        except Exception:
            # The last plain record, for handleError's message (a Deferred has none).
            last = next((i for i in reversed(items) if isinstance(i, logging.LogRecord)), None)
            self.handleError(last or logging.makeLogRecord({"msg": "cannot write log lines"}))
        finally:
            self.pending = None

    def _append_redacted(self, item: Deferred, pending: list[str]) -> None:
        """Redact and format ``item`` as the filters and formatter would its record."""
        try:
            kind, fields = item
            created, name, level, message, extra = kind.line_parts(fields)
            for redactor in self.filters:
                message, extra = redactor.redact_parts(message, extra)  # type: ignore[union-attr]
            formatter: JsonFormatter = self.formatter  # type: ignore[assignment]
            pending.append(formatter.format_parts(created, name, level, message, extra))
        except Exception:
            logging.getLogger(__name__).exception("cannot format a log line")


def _all_clean(checks: list[Callable[[str], bool]]) -> Callable[[str], bool]:
    """One check of a text by every redaction filter (most handlers have exactly one)."""
    if len(checks) == 1:
        return checks[0]
    return lambda text: all(check(text) for check in checks)


def _record_of(kind: LineKind, fields: Any) -> logging.LogRecord | None:
    try:
        return kind.record(fields)
    except Exception:
        logging.getLogger(__name__).exception("cannot make a log record")
        return None


class _Enqueue(QueueHandler):
    """Appends the record itself to the writer's deque: it never leaves the process, so nothing
    is formatted (nor copied) in the caller, and no thread is woken per record."""

    def __init__(self, writer: LogWriter) -> None:
        super().__init__(writer.records)  # type: ignore[arg-type]
        self.writer = writer

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        self.writer.submit(record)


class LogWriter:
    """The thread that takes records off the deque and hands them to the output handler.

    It wakes every FLUSH_SECONDS (or once MAX_BATCH records wait) rather than per record: a
    thread woken per record takes the GIL from the event loop on every request, which cost
    more than the formatting it saved.
    """

    def __init__(self, handler: BatchStreamHandler) -> None:
        self.handler = handler
        # deque.append and popleft are atomic: callers never take a lock to log.
        self.records: collections.deque[logging.LogRecord | Deferred] = collections.deque()
        self.wake = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="orc-log-writer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def submit(self, item: logging.LogRecord | Deferred) -> None:
        self.records.append(item)
        if len(self.records) >= MAX_BATCH:
            self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait(FLUSH_SECONDS)
            self.wake.clear()
            stopping = self.stopping
            self.write_queued()
            if stopping:
                return

    def write_queued(self) -> None:
        """Write every record queued so far, oldest first, MAX_BATCH per write."""
        popleft = self.records.popleft
        while self.records:
            batch: list[logging.LogRecord | Deferred] = []
            with contextlib.suppress(IndexError):
                while len(batch) < MAX_BATCH:
                    batch.append(popleft())
            self.handler.locked_write(batch)

    def stop(self) -> None:
        """Write everything queued so far, then end the thread."""
        if self.thread.is_alive():
            self.stopping = True
            self.wake.set()
            self.thread.join()


_writer: LogWriter | None = None


def defer(kind: LineKind, fields: Any) -> bool:
    """Queue a line of ``fields`` for the writer thread; False when there is no writer (the
    caller then logs its record itself). It goes to the output handler and its filters; the
    logger's own filters and level are the caller's to check."""
    writer = _writer
    if writer is None:
        return False
    writer.submit((kind, fields))
    return True


def output_handler() -> logging.Handler | None:
    """The handler that writes lines (a filter added here runs in the writer thread)."""
    return _writer.handler if _writer is not None else None


def stop_writer() -> None:
    """Write every queued record now and log synchronously from here on (exit, fork)."""
    global _writer
    writer, _writer = _writer, None
    if writer is None:
        return
    writer.stop()
    logging.getLogger().handlers[:] = [writer.handler]
    writer.write_queued()  # whatever another thread logged while the writer stopped


def _before_fork() -> None:
    # A child must not inherit the stream's lock while the writer holds it mid-write.
    if _writer is not None:
        _writer.handler.acquire()


def _after_fork_in_parent() -> None:
    if _writer is not None:
        _writer.handler.release()


def _after_fork_in_child() -> None:
    """The child has no writer thread (and may be about to exec): it logs synchronously."""
    global _writer
    writer, _writer = _writer, None
    if writer is not None:
        writer.handler.createLock()
        writer.handler.pending = None
        logging.getLogger().handlers[:] = [writer.handler]


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)
atexit.register(stop_writer)


class ExceptionOnOneLine(logging.Filter):
    """Puts the exception's type and message on the record's line instead of its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None:
            record.msg = f"{record.getMessage()}: {type(error).__name__}: {error}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def setup_logging(level: str, fmt: str, secrets: Iterable[str] = ()) -> None:
    """Send orc's, Sanic's and Huey's logs to stderr in one format at one level, through the
    writer thread, with every secret (by shape, and the configured ``secrets`` by value)
    redacted (in the writer thread, before formatting)."""
    global _writer
    stop_writer()
    handler = BatchStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactSecrets(secrets))
    writer = LogWriter(handler)
    writer.start()
    _writer = writer
    root = logging.getLogger()
    root.handlers[:] = [_Enqueue(writer)]
    root.setLevel(level.upper())
    for name in SANIC_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Tortoise logs SQL (and parts of passwords) at debug; keep it quiet unless asked for.
    logging.getLogger("tortoise").setLevel(max(logging.INFO, root.level))
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    for name in ONE_LINE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ExceptionOnOneLine) for f in logger.filters):
            logger.addFilter(ExceptionOnOneLine())
