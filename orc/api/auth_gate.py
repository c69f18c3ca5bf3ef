"""The request gate when auth is on: who is calling (authenticate), may they (authorize)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from sanic import Request
from sanic.response import HTTPResponse

from orc.api.error_handler import error_response
from orc.api.route_roles import PUBLIC, required_role, route_key
from orc.auth.access_tokens import access_token_identity, looks_like_access_token
from orc.auth.identity import SERVER_TOKEN_IDENTITY, Identity
from orc.auth.oidc import OidcError, OidcProvider, claims_email, claims_email_verified
from orc.auth.ratelimit import FailureLimiter
from orc.auth.sessions import (
    COOKIE_NAME,
    csrf_token,
    session_id_from_cookie,
    session_identity,
)
from orc.auth.tickets import TicketBook, ticket_identity
from orc.auth.token import server_token_credential, token_matches
from orc.auth.users import SignInRefused, check_claim_length, sign_in_user
from orc.config import Settings, is_loopback
from orc.db.models import User

log = logging.getLogger("orc.auth")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
METRICS_ROUTE = "metrics.metrics"
WEBSOCKET_ROUTE = "events.websocket"
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")

LOGIN_STARTS_PER_ADDRESS = 30
LOGIN_STARTS_WINDOW = 600.0

# Probes must work without credentials; matched exactly, never by prefix.
EXEMPT_PATHS = frozenset({"/api/health", "/api/health/ready"})
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]{1,4096}=*")


def bearer_token(request: Request) -> str | None:
    """The token of a well-formed ``Authorization: Bearer …`` header, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    # RFC 6750's b64token: anything else (spaces, controls, non-ASCII bytes) is not a token.
    if scheme.lower() != "bearer" or not B64TOKEN.fullmatch(value):
        return None
    return value


class Refused(Exception):
    """Authentication failed; ``counted`` when it looks like a guess (rate limited)."""

    def __init__(self, message: str, counted: bool = True) -> None:
        super().__init__(message)
        self.counted = counted


@dataclass
class Authenticator:
    """Everything the gate needs, made once per API process."""

    settings: Settings
    secret_key: str
    oidc: OidcProvider | None = None
    limiter: FailureLimiter = field(default_factory=FailureLimiter)
    # Sign-ins started per address (each stores a row until it finishes or is abandoned).
    login_starts: FailureLimiter = field(
        default_factory=lambda: FailureLimiter(LOGIN_STARTS_PER_ADDRESS, LOGIN_STARTS_WINDOW)
    )
    tickets: TicketBook = field(default_factory=TicketBook)

    @property
    def base_origin(self) -> str:
        parts = urlsplit(self.settings.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    async def identify(self, request: Request) -> tuple[Identity | None, str | None]:
        """The identity a request proves and how (header, cookie, ticket); Refused if bad."""
        if "authorization" in request.headers:
            return await self._from_header(request), None
        if route_key(request) == WEBSOCKET_ROUTE and "ticket" in request.args:
            claims = self.tickets.redeem(request.args.get("ticket", ""), self.secret_key)
            server_token = self.settings.auth_token
            identity = await ticket_identity(claims, server_token) if claims else None
            if identity is None:
                raise Refused("the WebSocket ticket is invalid, expired or used")
            return identity, None
        cookie = request.cookies.get(COOKIE_NAME)
        if cookie:
            session_id = session_id_from_cookie(cookie, self.secret_key)
            server_token = self.settings.auth_token
            identity = await session_identity(session_id, server_token) if session_id else None
            if identity is None:
                raise Refused("your session has ended; sign in again", counted=False)
            return identity, session_id
        return None, None

    async def identity_for_secret(self, presented: str) -> tuple[Identity, str] | None:
        """The server token or an access token: who it is, and the credential a session
        bought with it records (so revoking or rotating the token ends that session)."""
        token = self.settings.auth_token
        if looks_like_access_token(presented):
            identity = await access_token_identity(presented, token)
            if identity is None or identity.revocation_key is None:
                return None
            return identity, identity.revocation_key
        if token and token_matches(presented, token):
            credential = server_token_credential(token)
            return replace(SERVER_TOKEN_IDENTITY, server_credential=credential), credential
        return None

    async def _from_header(self, request: Request) -> Identity:
        presented = bearer_token(request)
        if presented is None:
            raise Refused("use Authorization: Bearer <token>")
        found = await self.identity_for_secret(presented)
        if found is not None:
            return found[0]
        if looks_like_access_token(presented):
            raise Refused("the access token is invalid, expired or revoked")
        if self.oidc is not None and presented.count(".") == 2:
            return await self._from_id_token(presented)
        raise Refused("missing or invalid bearer token")

    async def _from_id_token(self, presented: str) -> Identity:
        assert self.oidc is not None
        try:
            claims = await self.oidc.verify_id_token(presented)
        except OidcError as exc:
            # Counted even when the issuer is away: garbage tokens must not buy free lookups.
            raise Refused(str(exc)) from None
        try:
            check_claim_length("subject", claims["sub"])
            user = await User.get_or_none(subject=claims["sub"])
            if user is None:
                email = claims_email(claims)
                name = str(claims.get("name", ""))
                verified = claims_email_verified(claims)
                user = await sign_in_user(claims["sub"], email, name, self.settings, verified)
        except (OidcError, SignInRefused) as exc:
            raise Refused(str(exc)) from None
        return Identity(kind="id_token", subject=user.email, role=user.role, user_id=user.id)

    def from_our_origin(self, request: Request) -> bool:
        """No ``Origin`` (not a browser, or an old one), or ours; compared as bytes, so any
        header value (``null``, non-ASCII) is simply not ours."""
        origin = request.headers.get("origin")
        if origin is None:
            return True
        return token_matches(origin, self.base_origin)

    def csrf_ok(self, request: Request, session_id: str) -> bool:
        """A cookie-authenticated change comes from our own pages (Origin) or knows the token."""
        # Compared as bytes: a header may hold any character, and compare_digest refuses
        # non-ASCII str.
        origin = request.headers.get("origin")
        if origin is not None and token_matches(origin, self.base_origin):
            return True
        presented = request.headers.get(CSRF_HEADER)
        return token_matches(presented, csrf_token(session_id, self.secret_key))

    def metrics_open(self, request: Request) -> bool:
        """/api/metrics without a user: the metrics token, or loopback when allowed."""
        settings = self.settings
        if settings.metrics_token and token_matches(bearer_token(request), settings.metrics_token):
            return True
        if not settings.metrics_public_loopback:
            return False
        # A proxy on this machine makes every client look local: forwarded requests are not.
        if any(name in request.headers for name in FORWARDING_HEADERS):
            return False
        return is_loopback(request.ip)


def client_address(request: Request) -> str:
    return request.remote_addr or request.ip


def unauthorized(message: str) -> HTTPResponse:
    response = error_response(401, "unauthorized", message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="orc"'
    return response


def too_many_attempts(limiter: FailureLimiter, address: str) -> HTTPResponse | None:
    """The 429 for an address over its failure budget (None while it is within it)."""
    retry_after = limiter.retry_after(address)
    if retry_after is None:
        return None
    response = error_response(
        429, "too_many_attempts", f"too many failed sign-ins; retry in {retry_after} s"
    )
    response.headers["Retry-After"] = str(retry_after)
    return response


async def gate(request: Request) -> HTTPResponse | None:
    """Request middleware: answer 401/403/429 here, or let the handler run with an identity."""
    if request.path in EXEMPT_PATHS:
        return None
    key = route_key(request)
    minimum = required_role(key)
    if minimum == PUBLIC:
        return None
    auth: Authenticator = request.app.ctx.auth
    if key == METRICS_ROUTE and auth.metrics_open(request):
        return None
    address = client_address(request)
    try:
        # Checked even when the address is limited: a right credential always passes, so one
        # guesser behind a shared address (an office NAT) cannot lock everyone else out. That
        # teaches a guesser nothing: tokens are 256-bit random, weak server tokens are refused.
        identity, session_id = await auth.identify(request)
    except Refused as exc:
        limited = too_many_attempts(auth.limiter, address)
        if exc.counted:
            auth.limiter.record_failure(address)
        log.info("authentication failed", extra={"remote": address, "path": request.path})
        return limited if limited is not None else unauthorized(str(exc))
    if identity is None:
        return unauthorized("sign in, or send Authorization: Bearer <token>")
    changes = request.method not in SAFE_METHODS or key == WEBSOCKET_ROUTE
    if session_id is not None and changes and not auth.csrf_ok(request, session_id):
        return error_response(
            403, "csrf_failed", f"cross-site request refused; send it from {auth.base_origin}"
        )
    if key == METRICS_ROUTE and auth.settings.metrics_token and not identity.can("admin"):
        return error_response(403, "forbidden", "metrics are for admins and the metrics token")
    if not identity.can(minimum):
        return error_response(
            403, "forbidden", f"this needs the role {minimum} or higher; yours is {identity.role}"
        )
    request.ctx.identity = identity
    return None
