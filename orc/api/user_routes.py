"""/api/users and /api/tokens: roles and personal access tokens."""

from __future__ import annotations

from datetime import timedelta

from sanic import Request
from sanic.response import HTTPResponse, json

from orc.api.blueprint import JsonBlueprint
from orc.api.openapi_ext import openapi
from orc.api.openapi_schema import json_body
from orc.api.route_roles import forbidden, identity_of
from orc.api.schemas import (
    ROW_ID_SCHEMA,
    AccessTokenCreate,
    UserCreate,
    UserPatch,
    parse_body,
)
from orc.auth.access_tokens import (
    create_access_token,
    describe_access_token,
    list_access_tokens,
    revoke_access_token,
)
from orc.auth.roles import at_least
from orc.auth.users import add_user, describe_user, list_users, set_role
from orc.db.models import AccessToken, User
from orc.errors import ApiError

bp = JsonBlueprint("users")


@bp.get("/api/users")
async def users_index(request: Request) -> HTTPResponse:
    """Everyone who has signed in (or was added), with their role."""
    return json({"items": [describe_user(user) for user in await list_users()]})


@bp.post("/api/users")
@openapi.body(json_body(UserCreate))
async def users_create(request: Request) -> HTTPResponse:
    """Add a person before their first sign-in (needed when ORC_OIDC_CREATE_USERS=false)."""
    body = parse_body(request, UserCreate)
    caller = identity_of(request)
    if at_least(body.role, "admin") and caller.role != "owner":
        raise forbidden("only an owner can add admins or owners")
    user = await add_user(body.email, body.role)
    return json(describe_user(user), status=201)


@bp.patch("/api/users/<user_id:int>")
@openapi.parameter("user_id", ROW_ID_SCHEMA, "path", required=True)
@openapi.body(json_body(UserPatch))
async def users_update(request: Request, user_id: int) -> HTTPResponse:
    """Change a user's role (admins: members and viewers; owners: anyone)."""
    body = parse_body(request, UserPatch)
    user = await User.get_or_none(id=user_id)
    if user is None:
        raise ApiError(404, "user_not_found", f"no user with id {user_id}")
    await set_role(user, body.role, identity_of(request).role)
    return json(describe_user(user))


@bp.get("/api/tokens")
async def tokens_index(request: Request) -> HTTPResponse:
    """Your access tokens (admins: everyone's)."""
    identity = identity_of(request)
    user_id = None if identity.can("admin") else identity.user_id
    if user_id is None and not identity.can("admin"):
        return json({"items": []})
    tokens = await list_access_tokens(user_id)
    return json({"items": [describe_access_token(token) for token in tokens]})


@bp.post("/api/tokens")
@openapi.body(json_body(AccessTokenCreate))
async def tokens_create(request: Request) -> HTTPResponse:
    """Make an access token for yourself; the secret is in this answer only."""
    body = parse_body(request, AccessTokenCreate)
    identity = identity_of(request)
    role = body.role or identity.role
    if not at_least(identity.role, role):
        raise forbidden(f"a token cannot have more rights than you ({identity.role})")
    if identity.via_access_token:
        raise forbidden(
            "an access token cannot make access tokens; sign in, or run orc token create"
        )
    if identity.user_id is None and not identity.can("admin"):
        raise forbidden("only signed-in users and admins can make access tokens")
    user = await User.get_or_none(id=identity.user_id) if identity.user_id else None
    expires = timedelta(days=body.expires_in_days)
    made = await create_access_token(body.name, role, user, expires, identity.server_credential)
    described = describe_access_token(made.record)
    described["token"] = made.secret
    return json(described, status=201)


@bp.delete("/api/tokens/<token_id:int>")
@openapi.parameter("token_id", ROW_ID_SCHEMA, "path", required=True)
async def tokens_revoke(request: Request, token_id: int) -> HTTPResponse:
    """Revoke a token (yours, or anyone's for admins); its WebSockets close."""
    token = await AccessToken.get_or_none(id=token_id).select_related("user")
    identity = identity_of(request)
    owner_id = token.user.id if token is not None and token.user is not None else None
    mine = owner_id is not None and owner_id == identity.user_id
    if token is None or not (mine or identity.can("admin")):
        # Not telling a member whether someone else's token id exists.
        raise ApiError(404, "token_not_found", f"no token {token_id} of yours")
    await revoke_access_token(token)
    token = await AccessToken.get(id=token_id).select_related("user")
    return json(describe_access_token(token))
