"""`create_app(settings)` served in this process: no socket, no subprocess, same app as `orc serve`.

The app runs on its own event loop in a thread, as it would in the API process, so background
work (the outbox tailer) keeps going between requests and tests stay synchronous. The client is
a plain ``httpx.Client``; each request goes through the ASGI interface on that loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sanic.asgi import Lifespan

from orc.api.app import create_app
from orc.config import Settings, load_settings
from orc.db.schema import migrate_database

T = TypeVar("T")
BASE_URL = "http://orc.test"
CLIENT_ADDRESS = "127.0.0.1"
CALL_TIMEOUT_SECONDS = 60.0


async def _no_messages() -> dict[str, Any]:
    raise AssertionError("the lifespan is driven directly, not through messages")


class _LoopTransport(httpx.BaseTransport):
    """Hands each request of a sync client to the app's loop and waits for the answer."""

    def __init__(self, live: LiveApp, client_address: str) -> None:
        self.live = live
        self.asgi = httpx.ASGITransport(app=live.app, client=(client_address, 40000))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def answer() -> httpx.Response:
            forwarded = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            response = await self.asgi.handle_async_request(forwarded)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return self.live.run(answer())


class LiveApp:
    """One orc app with its startup done; ``http`` talks to it, ``env`` reaches the same data.

    One at a time: Tortoise's connections are global to the process, as in `orc serve`.
    """

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.settings: Settings = load_settings(environ=env, cwd=cwd)
        asyncio.run(migrate_database(self.settings.database_url))
        self.app = create_app(self.settings)
        self.app.asgi = True
        # The address orc believes it has (redirects, cookies, Origin checks); never dialled.
        self.base_url = env.get("ORC_BASE_URL") or BASE_URL
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._lifespan = Lifespan(self.app, {"type": "lifespan"}, _no_messages, _no_messages)
        self._clients: list[httpx.Client] = []
        self.run(self._lifespan.startup())
        self.http = self.client()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the app's loop (where its database connections live)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(CALL_TIMEOUT_SECONDS)

    def client(self, address: str = CLIENT_ADDRESS, **kwargs: Any) -> httpx.Client:
        """A new client (own cookies) whose requests come from ``address``."""
        client = httpx.Client(
            base_url=self.base_url, transport=_LoopTransport(self, address), timeout=15, **kwargs
        )
        self._clients.append(client)
        return client

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def _shut_down(self) -> None:
        done = asyncio.run_coroutine_threadsafe(self._lifespan.shutdown(), self.loop)
        deadline = time.monotonic() + CALL_TIMEOUT_SECONDS
        while True:
            try:
                done.result(0.5)
                return
            except concurrent.futures.TimeoutError:
                assert time.monotonic() < deadline, "the app did not shut down"
            # A cancellation that lands while the outbox tailer awaits the database can be
            # swallowed there (seen on SQLite), and stop_tailer then waits forever; repeat it.
            tailer = getattr(self.app.ctx, "tailer_task", None)
            if tailer is not None:
                self.loop.call_soon_threadsafe(tailer.cancel)

    def close(self) -> None:
        """Shut the app down (its shutdown listeners run); safe to call twice."""
        if self.loop.is_closed():
            return
        for client in self._clients:
            client.close()
        try:
            self._shut_down()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()
