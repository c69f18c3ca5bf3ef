"""Who may call each route: nothing (public), or a minimum role; and who is calling.

Keyed by ``blueprint.handler``. A route missing here needs admin: new routes are closed until
someone decides who may use them (tests/test_auth_permissions.py lists every route).
Ownership ("members change their own tasks") is checked by the handlers, which know the task.
"""

from __future__ import annotations

from sanic import Request

from orc.auth.identity import LOCAL_OWNER, Identity
from orc.errors import ApiError

PUBLIC = "public"

ROUTE_ROLES: dict[str, str] = {
    # The probes are exempt by exact path only (the gate checks that first): any other
    # spelling that reaches them (/api/health/) needs credentials like everything else.
    "health.health": "viewer",
    "health.ready": "viewer",
    # The sign-in steps.
    "auth.login": PUBLIC,
    "auth.callback": PUBLIC,
    "auth.session_create": PUBLIC,
    "auth.logout": PUBLIC,
    "auth.config": PUBLIC,
    # The dashboard's shell and assets hold no data; what they show comes from the API.
    "web.index": PUBLIC,
    "web.assets": PUBLIC,
    # Reading.
    "auth.me": "viewer",
    "auth.ws_ticket": "viewer",
    "tasks.tasks_index": "viewer",
    "tasks.tasks_show": "viewer",
    "tasks.vocabulary": "viewer",
    "usage.usage_show": "viewer",
    "usage.cost_summary_view": "viewer",
    "usage.cost_timeseries_view": "viewer",
    "events.events_index": "viewer",
    "events.websocket": "viewer",
    "metrics.metrics": "viewer",
    "docs_assets": "viewer",
    # Working on tasks (a member only on their own).
    "tasks.tasks_create": "member",
    "tasks.tasks_update": "member",
    "tasks.tasks_delete": "member",
    "tasks.tasks_action": "member",
    "usage.usage_record": "member",
    # Tokens: everyone manages their own; admins everyone's.
    "users.tokens_index": "viewer",
    "users.tokens_create": "viewer",
    "users.tokens_revoke": "viewer",
    # Administration.
    "users.users_index": "admin",
    "users.users_create": "admin",
    "users.users_update": "admin",
    # Runs: what the agent did; projects are the server's repositories (admins register them).
    "runs.transcript_index": "viewer",
    "runs.diff_show": "viewer",
    "runs.run_show": "viewer",
    "runs.projects_index": "viewer",
    "runs.projects_create": "admin",
    "runs.projects_delete": "admin",
    "backups.get_backups": "admin",
    "backups.post_backup": "admin",
}
DEFAULT_ROLE = "admin"


def identity_of(request: Request) -> Identity:
    """The caller of ``request`` as the auth gate set it (the local owner when auth is off)."""
    return getattr(request.ctx, "identity", None) or LOCAL_OWNER


def route_key(request: Request) -> str | None:
    """``blueprint.handler`` of the matched route (the app's name prefix removed)."""
    route = request.route
    if route is None:
        return None
    return route.name.partition(".")[2]


def required_role(key: str | None) -> str:
    if key is None:
        return DEFAULT_ROLE
    if key.startswith("openapi.") or key.startswith("docs."):
        return "viewer"
    return ROUTE_ROLES.get(key, DEFAULT_ROLE)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def require_owner_or_admin(request: Request, owner: str, what: str) -> Identity:
    """The caller, if they may change something created by ``owner``; 403 otherwise."""
    identity = identity_of(request)
    if identity.can("admin") or (identity.can("member") and identity.subject == owner):
        return identity
    raise forbidden(f"your role ({identity.role}) may not change {what} created by someone else")
