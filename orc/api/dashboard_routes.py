"""The dashboard: its page at ``/`` and its static files under ``/app``, all served locally."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from urllib.parse import unquote

from sanic import Blueprint, Request
from sanic.exceptions import NotFound
from sanic.handlers.directory import DirectoryHandler
from sanic.response import HTTPResponse, html

from orc import __version__

APP_DIR = Path(__file__).resolve().parent.parent / "web" / "app"
# Everything comes from this server: a browser refuses any other host, so the page cannot leak
# data or depend on the internet even if a future change adds a stray URL.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


class _NoListing(DirectoryHandler):
    """A directory under /app is not a file: 404 (Sanic's default raises, which is a 500)."""

    async def handle(self, request: Request, path: str) -> HTTPResponse:
        raise NotFound("no such file")


bp = Blueprint("web")
bp.static("/app", APP_DIR, name="assets", directory_handler=_NoListing("/app", APP_DIR))


@bp.on_request
async def _refuse_odd_paths(request: Request) -> None:
    # Sanic's static handler resolves the path before its own error handling (a NUL raises there)
    # and logs a ".." with a bogus traceback: neither can name a file, so answer 404 first.
    path = unquote(request.path)
    if "\x00" in path or ".." in path.split("/"):
        raise NotFound("no such file")


@cache
def _page() -> str:
    # The version in the asset URLs makes a browser fetch new files after an upgrade.
    return (APP_DIR / "index.html").read_text(encoding="utf-8").replace("{{version}}", __version__)


@bp.get("/")
async def index(request: Request) -> HTTPResponse:
    """The dashboard's page; it holds no data (everything comes from the API)."""
    return html(
        _page(),
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )
