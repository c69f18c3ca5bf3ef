"""Liveness and readiness probes; never behind auth, never expensive."""

from __future__ import annotations

from sanic import Request
from sanic.response import HTTPResponse, json

from orc import __version__
from orc.api.blueprint import JsonBlueprint
from orc.health.readiness import check_readiness

bp = JsonBlueprint("health")
# Liveness says the same every time: encoded once, not per probe.
_ALIVE = json({"status": "ok", "version": __version__}).body


@bp.get("/api/health")
async def health(request: Request) -> HTTPResponse:
    """Liveness: the process answers. Touches nothing else."""
    return HTTPResponse(_ALIVE, content_type="application/json")


@bp.get("/api/health/ready")
async def ready(request: Request) -> HTTPResponse:
    """Readiness: 503 when the database or its schema is not usable."""
    result = await check_readiness(request.app.ctx.settings)
    auth = request.app.ctx.auth
    if auth is not None and auth.oidc is not None:
        # Information, not critical: API tokens keep working while the identity provider is away.
        result.info["oidc"] = await auth.oidc.status()
    body = {
        "status": "ok" if result.ok else "degraded",
        "checks": result.checks,
        "info": result.info,
        "version": __version__,
    }
    return json(body, status=200 if result.ok else 503)
