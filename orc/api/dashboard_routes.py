"""The dashboard: its page at ``/`` and its static files under ``/app``, all served locally."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from sanic import Blueprint, Request
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

bp = Blueprint("web")
bp.static("/app", APP_DIR, name="assets")


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
