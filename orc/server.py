"""The API process: Sanic in one process (``--workers 1``) or a main process with N workers."""

from __future__ import annotations

from sanic import Sanic
from sanic.worker.loader import AppLoader

from orc.app import create_app_from_env
from orc.config import Settings


def run_api(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT; blocks. Settings reach worker processes through the env."""
    loader = AppLoader(factory=create_app_from_env)
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
