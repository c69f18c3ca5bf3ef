"""The API process: Sanic in one process (``--workers 1``) or a main process with N workers."""

from __future__ import annotations

from functools import partial

from sanic import Sanic
from sanic.log import error_logger
from sanic.worker.loader import AppLoader
from sanic.worker.manager import WorkerManager

from orc.api.app import create_app
from orc.config import Settings
from orc.runtime import logs
from orc.runtime.redact import secret_values


def _wait_for_ack_unless_stopping(self: WorkerManager) -> None:
    """Sanic's ``WorkerManager.wait_for_ack`` with one change: give up once shutting down.

    Upstream re-sends the shutdown message to itself and loops forever (at 100 % CPU) when
    SIGTERM arrives before every worker has acknowledged start-up; the launcher then has to
    SIGKILL it. Here the loop ends, the manager's monitor receives the shutdown message and
    the workers stop as usual.
    """
    misses = 0
    while not self._all_workers_ack():
        if self._shutting_down:
            return
        if self.monitor_subscriber.poll(0.1):
            message = self.monitor_subscriber.recv()
            if message != "__TERMINATE_EARLY__":
                self.monitor_publisher.send(message)
                continue
            misses = self.THRESHOLD
        misses += 1
        if misses > self.THRESHOLD:
            error_logger.error("Not all API workers acknowledged start-up; shutting down.")
            self.kill()


WorkerManager.wait_for_ack = _wait_for_ack_unless_stopping  # type: ignore[method-assign]


def _create_app(settings: Settings) -> Sanic:
    """orc's app, with its access log written by this process's log writer.

    Also the factory of every API worker process that Sanic spawns (``--workers`` above 1):
    they start with a fresh interpreter, so they set up logging here.
    """
    if logs.output_handler() is None:
        logs.setup_logging(settings.log_level, settings.log_format, secret_values(settings))
    app = create_app(settings)
    app.ctx.defer_log = logs.defer
    return app


def run_api(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT; blocks.

    With several workers Sanic spawns them and pickles the loader: each gets these settings,
    so no worker reads the configuration again.
    """
    loader = AppLoader(factory=partial(_create_app, settings))
    app = loader.load()
    single = settings.workers == 1
    app.prepare(
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        single_process=single,
        access_log=False,
        motd=False,
        backlog=1024,
    )
    if single:
        Sanic.serve_single(primary=app)
    else:
        Sanic.serve(primary=app, app_loader=loader)
