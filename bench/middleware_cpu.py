"""CPU time of orc's response middleware per request, in one process, without HTTP.

A diagnostic beside bench/health_breakdown.py, much steadier on a shared machine (it counts
this process's CPU time, not requests/s through wrk): it builds orc's API as ``orc serve``'s API
process does (``orc.runtime.api_process``, ORC_ACCESS_LOG_PROBES=true), stops the log writer's
thread so that its work can be timed apart, then runs ``_on_response`` on ``--requests``
requests for GET /api/health (each a fresh Sanic request object of orc's request class, with a
connection's client address) and reports, per request:

  on the loop   the middleware itself, less an empty coroutine's cost (what the event loop pays)
  writer        the writer's work for the access lines queued (redaction, formatting, one
                write per batch into memory)

At ORC_LOG_LEVEL=info (``--level``, default) every request queues an access line; at warning
none. To measure another commit, put its tree first on PYTHONPATH (see README.md).

Run: .venv/bin/python bench/middleware_cpu.py [--level info] [--requests 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import tempfile
import time
from typing import Any

import benchlib


class _Connection:
    """What Sanic's connection info gives a request: the peer's address, no TLS."""

    client_ip = "127.0.0.1"
    ssl = False


async def _measure(app: Any, on_response: Any, requests: int) -> tuple[float, float]:
    """(on the loop, writer) CPU microseconds per request."""
    from sanic.compat import Header
    from sanic.response import HTTPResponse

    from orc.runtime import logs

    route, _, _ = app.router.get("/api/health", "GET", None)

    def request() -> Any:
        made = app.request_class(b"/api/health", Header({"host": "x"}), "1.1", "GET", None, app)
        made.route = route
        made.conn_info = _Connection()
        return made

    async def nothing(request: Any, response: Any) -> None:
        return None

    times = []
    for middleware in (on_response, nothing):
        pairs = [
            (request(), HTTPResponse(b"{}", content_type="application/json"))
            for _ in range(requests)
        ]
        start = time.process_time()
        for req, resp in pairs:
            await middleware(req, resp)
        times.append(time.process_time() - start)
    writer = logs._writer
    start = time.process_time()
    if writer is not None:
        writer.write_queued()
    written = time.process_time() - start
    return (times[0] - times[1]) / requests * 1e6, written / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", default="info", help="ORC_LOG_LEVEL (default info)")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.update(
        ORC_HOME=tempfile.mkdtemp(prefix="orc-bench-mw-"),
        ORC_LOG_LEVEL=args.level,
        ORC_ACCESS_LOG_PROBES="true",
    )
    import orc.api.app as orc_app
    from orc.config import load_settings
    from orc.runtime import logs
    from orc.runtime.api_process import _create_app

    app = _create_app(load_settings())
    handler = logs.output_handler()
    assert handler is not None and logs._writer is not None
    handler.setStream(io.StringIO())
    # The writer's thread would format lines while the loop is being timed: stop it, keep
    # the writer, and time its work separately.
    writer = logs._writer
    writer.stopping = True
    writer.wake.set()
    writer.thread.join()
    app.router.finalize()
    print(f"orc's response middleware, ORC_LOG_LEVEL={args.level}, {args.requests} requests")
    print(benchlib.load_note())
    for i in range(args.repeat):
        loop, written = asyncio.run(_measure(app, orc_app._on_response, args.requests))
        print(f"run {i + 1}: on the loop {loop:5.1f} us/request, writer {written:5.1f} us/request")
    print(benchlib.load_note())


if __name__ == "__main__":
    main()
