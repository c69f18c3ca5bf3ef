"""A real OIDC provider on loopback for the sign-in tests (oidc-provider-mock, in a thread).

Two test additions wrap it, neither of which touches what orc talks to:
- PKCE enforcement: the mock accepts any code_verifier, so a WSGI layer remembers each
  authorization's code_challenge and refuses a token request whose verifier does not match.
- /test/private-jwk hands the provider's own signing key to the tests, so they can forge tokens
  that differ from a real one in exactly one respect (expired, wrong issuer, alg none, ...).
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import flask
import httpx
import jwt
import oidc_provider_mock
import werkzeug.serving

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class PkceEnforcer:
    """WSGI middleware: a token request must carry the verifier of its authorization's challenge."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.challenges: dict[str, str] = {}  # authorization code -> code_challenge
        self.token_requests: list[dict[str, list[str]]] = []
        self.authorize_queries: list[dict[str, list[str]]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD")
        if path == "/oauth2/authorize" and method == "POST":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            self.authorize_queries.append(query)
            challenge = query.get("code_challenge", [""])[0]

            def remember(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
                for name, value in headers:
                    if name.lower() == "location":
                        code = parse_qs(urlsplit(value).query).get("code", [""])[0]
                        if code and challenge:
                            self.challenges[code] = challenge
                return start_response(status, headers, *rest)

            return self.app(environ, remember)
        if path == "/oauth2/token" and method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            form = parse_qs(body.decode())
            self.token_requests.append(form)
            code = form.get("code", [""])[0]
            verifier = form.get("code_verifier", [""])[0]
            challenge = self.challenges.get(code)
            if challenge is not None and (not verifier or s256(verifier) != challenge):
                start_response("400 Bad Request", [("Content-Type", "application/json")])
                return [b'{"error": "invalid_grant", "error_description": "PKCE mismatch"}']
        return self.app(environ, start_response)


class Provider:
    """The running provider: its issuer URL and helpers to get or forge ID tokens."""

    def __init__(
        self, port: int, enforcer: PkceEnforcer, host: str = "localhost", scheme: str = "http"
    ) -> None:
        self.port = port
        self.issuer = f"{scheme}://{host}:{port}"
        self.enforcer = enforcer

    def private_key(self) -> tuple[Any, str]:
        jwk = httpx.get(self.issuer + "/test/private-jwk", timeout=5).json()
        return jwt.PyJWK(jwk).key, jwk.get("kid", "")

    def id_token(
        self, client_id: str, sub: str, nonce: str | None = None, base: str | None = None
    ) -> str:
        """A real ID token from the provider's own code flow (any client id is accepted)."""
        base = base or self.issuer
        redirect_uri = "http://127.0.0.1:9/cb"
        params = {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": "openid email profile",
            "state": "s",
        }
        if nonce is not None:
            params["nonce"] = nonce
        consent = httpx.post(
            base + "/oauth2/authorize", params=params, data={"sub": sub}, timeout=5
        )
        code = parse_qs(urlsplit(consent.headers["location"]).query)["code"][0]
        token = httpx.post(
            base + "/oauth2/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
            auth=(client_id, "any-secret"),
            timeout=5,
        )
        token.raise_for_status()
        return str(token.json()["id_token"])

    def forge(self, claims: dict[str, Any], **headers: Any) -> str:
        """A token signed with the provider's real key, with exactly these claims."""
        key, kid = self.private_key()
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, **headers})

    def claims(self, client_id: str, sub: str, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {"iss": self.issuer, "aud": client_id, "sub": sub, "email": sub}
        base["email_verified"] = True
        return {**base, "iat": now, "exp": now + 300, **changes}


def oidc_env(
    env: dict[str, str], provider: Provider, port: int, client_id: str, **extra: str
) -> dict[str, str]:
    """``env`` plus what orc needs to sign in at ``provider`` (listening on ``port``)."""
    return {
        **env,
        "ORC_AUTH_TYPE": "oidc",
        "ORC_OIDC_ISSUER": provider.issuer,
        "ORC_OIDC_CLIENT_ID": client_id,
        "ORC_OIDC_CLIENT_SECRET": "client-secret-value",
        "ORC_BASE_URL": f"http://127.0.0.1:{port}",
        "ORC_OIDC_ALLOWED_DOMAINS": "example.com",
        **extra,
    }


@contextmanager
def run_provider(
    token_max_age: timedelta = timedelta(hours=1),
    host: str = "127.0.0.1",
    tls: tuple[Path, Path] | None = None,
) -> Iterator[Provider]:
    """The provider on ``host``; another address than loopback (reachable from containers) needs
    ``tls`` (certificate, key), as orc accepts plain http only for a localhost issuer."""
    app = oidc_provider_mock.app(access_token_max_age=token_max_age)

    @app.get("/test/private-jwk")
    def private_jwk() -> Any:
        return flask.jsonify(flask.g.oidc_provider_mock_storage.jwk.as_dict(is_private=True))

    @app.before_request
    def verified_emails() -> None:
        # Like real providers (Google, Keycloak, Okta), the mock's users have verified emails:
        # it would otherwise send no email_verified claim at all, which orc treats as unverified.
        request = flask.request
        if request.method == "POST" and request.path == "/oauth2/authorize":
            sub = request.form.get("sub")
            storage = flask.g.oidc_provider_mock_storage
            if sub and storage.get_user(sub) is None:
                claims = {"email": sub, "email_verified": True}
                storage.store_user(oidc_provider_mock.User(sub=sub, claims=claims))

    enforcer = PkceEnforcer(app.wsgi_app)
    app.wsgi_app = enforcer  # type: ignore[method-assign]
    ssl_context = None if tls is None else (str(tls[0]), str(tls[1]))
    server = werkzeug.serving.make_server(host, 0, app, threaded=True, ssl_context=ssl_context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    try:
        name = "localhost" if host == "127.0.0.1" else host
        yield Provider(server.server_port, enforcer, name, "http" if tls is None else "https")
    finally:
        server.shutdown()
        thread.join(5)
