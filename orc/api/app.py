"""The application factory: ``create_app(settings) -> Sanic``."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import time
from typing import Any

from sanic import Request, Sanic
from sanic.response import HTTPResponse

from orc import __version__
from orc.api import (
    access_log,
    auth_routes,
    backup_routes,
    dashboard_routes,
    event_routes,
    header_check,
    health_routes,
    metrics_routes,
    run_routes,
    task_routes,
    usage_routes,
    user_routes,
)
from orc.api.auth_gate import Authenticator, gate
from orc.api.docs_routes import install_docs
from orc.api.error_handler import install_error_handler
from orc.api.schemas import row_id
from orc.auth.oidc import OidcProvider
from orc.auth.secret_key import load_secret_key
from orc.config import Settings
from orc.db import close_database, open_database
from orc.health.prometheus import UNMATCHED_ROUTE, flush_observations, observe_request
from orc.usage.pricing import load_prices

MAX_REQUEST_BYTES = 1024 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
METRICS_FLUSH_SECONDS = 1.0
REQUEST_ID_HEADER = "X-Request-ID"


# Request ids: a random prefix per process and a counter; unique without a syscall per request.
_ID_PREFIX = os.urandom(4).hex()
_id_counter = itertools.count(1)


class OrcRequest(Request):
    """Sanic's request with a cheaper id than a uuid4 per request."""

    @classmethod
    def generate_id(cls, *_: Any) -> str:
        return f"{_ID_PREFIX}-{next(_id_counter):x}"

    @property
    def id(self) -> Any:
        """The client's X-Request-ID as Sanic reads it, else our own id as it is: Sanic would
        try it as a UUID and as an int first (two exceptions raised per request)."""
        if not self._id:
            if REQUEST_ID_HEADER in self.headers:
                return super().id
            self._id = self.generate_id()
        return self._id


def _route_template(request: Request) -> str:
    route = request.route
    return "/" + route.path if route is not None else UNMATCHED_ROUTE


def _client(request: Request, direct: bool) -> tuple[str, str]:
    """The client's address and scheme for the access line.

    ``direct`` when no proxy is trusted: then Sanic's ``remote_addr`` is always empty, and
    reading the connection saves parsing the forwarding headers per request.
    """
    if direct and "upgrade" not in request.headers:
        conn = request.conn_info
        if conn is not None:
            return conn.client_ip, "https" if conn.ssl else "http"
    return request.remote_addr or request.ip, request.scheme


async def _on_response(request: Request, response: HTTPResponse) -> None:
    ctx = request.app.ctx
    stream = request.stream
    if ctx.stopping and hasattr(stream, "keep_alive"):
        # Sanic closes idle keep-alive connections at shutdown but not one that was busy when
        # the signal came; without this it would hold the drain open until the timeout.
        stream.keep_alive = False  # type: ignore[union-attr]
    # Sanic's HTTP/1 handler stamps each request when it starts reading it.
    started = getattr(stream, "perft0", None)
    seconds = time.perf_counter() - started if started is not None else 0.0
    route = _route_template(request)
    method = request.method
    status = response.status
    observe_request(method, route, status, seconds)
    if method not in SAFE_METHODS and status < 400:
        # This process just wrote events: deliver them now rather than at the next poll.
        tailer = getattr(ctx, "tailer", None)
        if tailer is not None:
            tailer.wake.set()
    request_id = str(request.id)
    response.headers[REQUEST_ID_HEADER] = request_id
    if not access_log.logger.isEnabledFor(logging.INFO):
        return
    path = request.path
    if path in ctx.unlogged:
        return
    remote, scheme = _client(request, ctx.direct_clients)
    fields = (time.time(), request_id, method, path, route, status, seconds, remote, scheme)
    if not ctx.defer_log(access_log.ACCESS, fields):
        access_log.log_now(fields)


def _no_log_writer(kind: object, fields: object) -> bool:
    return False


async def _open_database(app: Sanic) -> None:
    await open_database(app.ctx.settings.database)


async def _freeze_startup_objects(app: Sanic) -> None:
    """Leave what start-up made (modules, routes, the ORM's models) out of the garbage
    collector's full collections, which otherwise walk all of it every time: 22-29 ms pauses
    of every request and WebSocket delivery in the API process (bench/run_event_latency.py)."""
    gc.freeze()


async def _mark_stopping(app: Sanic) -> None:
    app.ctx.stopping = True


async def _start_metrics_flush(app: Sanic) -> None:
    """Fold answered requests into the HTTP metrics every second (and at every scrape)."""
    loop = asyncio.get_running_loop()

    def tick() -> None:
        flush_observations()
        app.ctx.metrics_timer = loop.call_later(METRICS_FLUSH_SECONDS, tick)

    app.ctx.metrics_timer = loop.call_later(METRICS_FLUSH_SECONDS, tick)


async def _stop_metrics_flush(app: Sanic) -> None:
    app.ctx.metrics_timer.cancel()
    flush_observations()


async def _close_database(app: Sanic) -> None:
    await close_database()


def create_app(settings: Settings) -> Sanic:
    """Wire settings, database, error shape, metrics and blueprints into one Sanic app."""
    header_check.install()
    app = Sanic("orc", configure_logging=False, request_class=OrcRequest)
    app.config.REQUEST_MAX_SIZE = MAX_REQUEST_BYTES
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = settings.shutdown_timeout
    app.config.ACCESS_LOG = False
    app.config.MOTD = False
    # sanic-ext would load itself (and a CDN-backed /docs page); orc opts in explicitly.
    app.config.AUTO_EXTEND = False
    app.config.REQUEST_ID_HEADER = REQUEST_ID_HEADER
    # The client's address and scheme from X-Forwarded-For/-Proto, only through trusted proxies
    # (the rightmost PROXIES_COUNT entries); never from a header a client could set alone.
    app.config.PROXIES_COUNT = settings.proxies_count
    app.config.REAL_IP_HEADER = None
    # Every <x:int> path parameter is a row id (see row_id). Registered before the
    # blueprints, whose routes read the parameter types when added.
    app.router.register_pattern("int", row_id, r"^-?\d+$")
    app.ctx.settings = settings
    app.ctx.version = __version__
    app.ctx.stopping = False
    app.ctx.unlogged = frozenset() if settings.access_log_probes else access_log.PROBE_PATHS
    # No proxy trusted (and no SERVER_NAME or FORWARDED_SECRET, which orc never sets): the
    # client is the connection's peer (see _client).
    app.ctx.direct_clients = not settings.proxies_count
    # orc serve's API process replaces it with its log writer's (orc.runtime.logs.defer).
    app.ctx.defer_log = _no_log_writer
    app.ctx.prices = load_prices(settings.home)
    install_error_handler(app)
    app.before_server_start(_open_database)
    app.after_server_start(event_routes.start_tailer)
    app.before_server_stop(_mark_stopping)
    app.after_server_start(_start_metrics_flush)
    app.after_server_start(_freeze_startup_objects)
    app.after_server_stop(_stop_metrics_flush)
    app.before_server_stop(event_routes.stop_tailer)
    app.after_server_stop(_close_database)
    app.ctx.auth = None
    if settings.auth_enabled:
        oidc = OidcProvider(settings) if settings.auth_type == "oidc" else None
        app.ctx.auth = Authenticator(settings, load_secret_key(settings), oidc)
        # Without auth there is nothing to do before a request: no middleware, less per request.
        app.on_request(gate)
    app.on_response(_on_response)
    app.blueprint(health_routes.bp)
    app.blueprint(metrics_routes.bp)
    app.blueprint(task_routes.bp)
    app.blueprint(usage_routes.bp)
    app.blueprint(event_routes.bp)
    app.blueprint(auth_routes.bp)
    app.blueprint(user_routes.bp)
    app.blueprint(dashboard_routes.bp)
    app.blueprint(backup_routes.bp)
    app.blueprint(run_routes.bp)
    install_docs(app)
    return app
