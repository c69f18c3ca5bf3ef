"""/auth/*: OIDC sign-in and sign-out, the token sign-in for browsers, who am I, WS tickets."""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime, timedelta

from sanic import Request
from sanic.response import HTTPResponse, json, redirect

from orc.api.auth_gate import Authenticator, client_address, too_many_attempts
from orc.api.blueprint import JsonBlueprint
from orc.api.error_handler import error_response
from orc.api.route_roles import identity_of
from orc.api.schemas import TokenLogin, parse_body
from orc.auth.cleanup import LOGIN_LIFETIME, room_for_login
from orc.auth.identity import Identity
from orc.auth.oidc import OidcProvider, claims_email, claims_email_verified
from orc.auth.sessions import (
    COOKIE_NAME,
    SESSION_SECONDS,
    cookie_value,
    create_session,
    csrf_token,
    revoke_session,
    session_id_from_cookie,
)
from orc.auth.signing import sha256_hex
from orc.auth.tickets import TICKET_SECONDS, issue_ticket
from orc.auth.users import sign_in_user
from orc.db.models import OidcLogin, User
from orc.errors import ApiError

bp = JsonBlueprint("auth")

LOGIN_COOKIE = "orc_login"
LOGIN_SECONDS = int(LOGIN_LIFETIME.total_seconds())
MAX_RETURN_TO = 512  # OidcLogin.return_to's column


def _auth(request: Request) -> Authenticator:
    auth: Authenticator | None = getattr(request.app.ctx, "auth", None)
    if auth is None:
        raise ApiError(404, "auth_disabled", "authentication is off on this server")
    return auth


def _oidc(request: Request) -> OidcProvider:
    oidc = _auth(request).oidc
    if oidc is None:
        raise ApiError(
            404, "oidc_disabled", "this server signs in with a token: POST it to /auth/session"
        )
    return oidc


def _set_cookie(
    request: Request, response: HTTPResponse, name: str, value: str, seconds: int
) -> None:
    secure = _auth(request).settings.base_url.startswith("https://")
    response.add_cookie(
        name, value, path="/", httponly=True, samesite="Lax", secure=secure, max_age=seconds
    )


def _check_session_change(request: Request, auth: Authenticator) -> None:
    """Setting or ending a session: JSON only and, when a browser says where it comes from,
    from our own origin. A cross-site form can send neither (``text/plain`` is what makes it
    "simple"; ``application/json`` needs a CORS preflight that orc never grants), so no other
    site can sign a visitor in as the attacker (login CSRF) or out."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(
            415, "unsupported_media_type", "send this request with Content-Type: application/json"
        )
    if not auth.from_our_origin(request):
        raise ApiError(
            403, "csrf_failed", f"cross-site request refused; send it from {auth.base_origin}"
        )


def _local_path(value: str | None) -> str:
    """Only paths on this server may be redirected to after sign-in (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _too_many_sign_ins(message: str, retry_after: int) -> HTTPResponse:
    response = error_response(429, "too_many_sign_ins", message)
    response.headers["Retry-After"] = str(retry_after)
    return response


@bp.get("/auth/login")
async def login(request: Request) -> HTTPResponse:
    """Start an OIDC sign-in: redirect to the issuer with state, nonce and PKCE (S256)."""
    oidc = _oidc(request)
    return_to = request.args.get("return_to")
    if return_to is not None and len(return_to) > MAX_RETURN_TO:
        raise ApiError(400, "bad_query", f"return_to is longer than {MAX_RETURN_TO} characters")
    auth = _auth(request)
    address = client_address(request)
    # Each start stores a row before anyone is known: bounded per address and in total.
    retry_after = auth.login_starts.retry_after(address)
    if retry_after is not None:
        message = f"too many sign-ins started from your address; retry in {retry_after} s"
        return _too_many_sign_ins(message, retry_after)
    if not await room_for_login(datetime.now(UTC)):
        return _too_many_sign_ins("too many sign-ins are in progress; retry in a minute", 60)
    auth.login_starts.record_failure(address)
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    url = await oidc.authorization_url(state, nonce, verifier)
    await OidcLogin.create(
        state_hash=sha256_hex(state),
        nonce=nonce,
        code_verifier=verifier,
        return_to=_local_path(return_to),
    )
    response = redirect(url)
    # The state also rides in a cookie, so a callback only completes in the browser that began it.
    _set_cookie(request, response, LOGIN_COOKIE, state, LOGIN_SECONDS)
    return response


async def _take_login(state: str) -> OidcLogin:
    """The pending sign-in for ``state``, removed so it can be used once only."""
    state_hash = sha256_hex(state)
    pending = await OidcLogin.get_or_none(state_hash=state_hash)
    if pending is None or await OidcLogin.filter(state_hash=state_hash).delete() != 1:
        raise ApiError(
            400, "unknown_state", "this sign-in was already used or is unknown; sign in again"
        )
    if pending.created_at < datetime.now(UTC) - timedelta(seconds=LOGIN_SECONDS):
        raise ApiError(400, "sign_in_expired", "this sign-in took too long; sign in again")
    return pending


@bp.get("/auth/callback")
async def callback(request: Request) -> HTTPResponse:
    """Finish an OIDC sign-in: check state, exchange the code, verify the ID token."""
    oidc = _oidc(request)
    if request.args.get("error"):
        raise ApiError(
            400, "sign_in_denied", "the identity provider refused the sign-in; sign in again"
        )
    state = request.args.get("state")
    if not state:
        raise ApiError(400, "missing_state", "the callback has no state; sign in again")
    expected = request.cookies.get(LOGIN_COOKIE) or ""
    if not hmac.compare_digest(state.encode(), expected.encode()):
        raise ApiError(
            400, "state_mismatch", "this sign-in was started in another browser; sign in again"
        )
    pending = await _take_login(state)
    code = request.args.get("code")
    if not code:
        raise ApiError(400, "missing_code", "the callback has no code; sign in again")
    id_token = await oidc.exchange_code(code, pending.code_verifier)
    claims = await oidc.verify_id_token(id_token, nonce=pending.nonce)
    email = claims_email(claims)
    name = str(claims.get("name", ""))
    verified = claims_email_verified(claims)
    user = await sign_in_user(claims["sub"], email, name, _auth(request).settings, verified)
    session_id = await create_session(user.email, user.role, user)
    response = redirect(pending.return_to)
    _set_cookie(
        request,
        response,
        COOKIE_NAME,
        cookie_value(session_id, _auth(request).secret_key),
        SESSION_SECONDS,
    )
    _set_cookie(request, response, LOGIN_COOKIE, "", 0)  # removes it
    return response


@bp.post("/auth/session")
async def session_create(request: Request) -> HTTPResponse:
    """Browsers sign in with the server's token (or an access token) once, for a cookie."""
    auth = _auth(request)
    _check_session_change(request, auth)
    address = client_address(request)
    presented = parse_body(request, TokenLogin).token
    # A right token always passes, even from an address over its failure budget (see gate).
    found = await auth.identity_for_secret(presented)
    if found is None:
        limited = too_many_attempts(auth.limiter, address)
        auth.limiter.record_failure(address)
        if limited is not None:
            return limited
        raise ApiError(401, "unauthorized", "that token is not valid here")
    identity, credential = found
    user = await User.get_or_none(id=identity.user_id) if identity.user_id else None
    session_id = await create_session(identity.subject, identity.role, user, credential)
    response = json(_describe(identity, csrf_token(session_id, auth.secret_key)))
    cookie = cookie_value(session_id, auth.secret_key)
    _set_cookie(request, response, COOKIE_NAME, cookie, SESSION_SECONDS)
    return response


@bp.post("/auth/logout")
async def logout(request: Request) -> HTTPResponse:
    """End the session: the cookie stops working everywhere, its WebSockets close."""
    auth = _auth(request)
    _check_session_change(request, auth)
    cookie = request.cookies.get(COOKIE_NAME)
    session_id = session_id_from_cookie(cookie, auth.secret_key) if cookie else None
    if session_id is not None and not auth.csrf_ok(request, session_id):
        raise ApiError(
            403, "csrf_failed", f"cross-site request refused; send it from {auth.base_origin}"
        )
    if session_id is not None:
        await revoke_session(session_id)
    body: dict[str, object] = {"signed_out": session_id is not None}
    if auth.oidc is not None and auth.oidc.metadata and auth.oidc.metadata.end_session_endpoint:
        body["end_session_url"] = auth.oidc.metadata.end_session_endpoint
    response = json(body)
    _set_cookie(request, response, COOKIE_NAME, "", 0)  # removes it
    return response


def _describe(identity: Identity, csrf: str | None) -> dict[str, object]:
    return {
        "subject": identity.subject,
        "role": identity.role,
        "via": identity.kind,
        "csrf_token": csrf,
    }


@bp.get("/auth/config")
async def config(request: Request) -> HTTPResponse:
    """Which sign-in the dashboard should offer: ``none``, ``token`` or ``oidc``."""
    auth: Authenticator | None = getattr(request.app.ctx, "auth", None)
    return json({"auth": auth.settings.auth_type if auth is not None else "none"})


@bp.get("/auth/me")
async def me(request: Request) -> HTTPResponse:
    """Who the caller is, their role, and (for a browser session) the CSRF token."""
    identity = identity_of(request)
    auth: Authenticator | None = getattr(request.app.ctx, "auth", None)
    csrf = None
    cookie = request.cookies.get(COOKIE_NAME)
    if auth is not None and identity.kind == "session" and cookie:
        session_id = session_id_from_cookie(cookie, auth.secret_key)
        csrf = csrf_token(session_id, auth.secret_key) if session_id else None
    body = _describe(identity, csrf)
    body["auth"] = auth.settings.auth_type if auth is not None else "none"
    return json(body)


@bp.post("/api/ws/ticket")
async def ws_ticket(request: Request) -> HTTPResponse:
    """A single-use ticket to open /api/ws?ticket=… within 30 seconds (for browsers)."""
    auth = _auth(request)
    ticket = issue_ticket(identity_of(request), auth.secret_key)
    return json({"ticket": ticket, "expires_in": TICKET_SECONDS})
