"""OIDC sign-in: discovery, the authorization code flow with PKCE (authlib), ID token checks.

ID tokens are verified with pyjwt against the issuer's JWKS: signature (asymmetric algorithms
only, so ``alg: none`` and HMAC-with-the-public-key tricks fail), issuer, audience, expiry,
and, for a sign-in, the nonce this server sent.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orc.config import Settings
from orc.errors import EXIT_USAGE, OrcError

if TYPE_CHECKING:
    import jwt
    from authlib.integrations.httpx_client import AsyncOAuth2Client

# pyjwt (with cryptography) and authlib's client are imported where they are used: every API
# process imports this module (for OidcError), but only one with OIDC on needs them (~14 MiB).

ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
SCOPES = "openid email profile"
HTTP_TIMEOUT_SECONDS = 5.0
# Readiness must answer quickly even when the issuer hangs.
STATUS_TIMEOUT_SECONDS = 2.0
CLOCK_SKEW_SECONDS = 60
# An unknown key id makes us fetch the JWKS again (key rotation), but not more often than this.
JWKS_REFRESH_MIN_SECONDS = 30.0


# The issuer cannot be used at all: the service is unavailable, not the user refused.
ISSUER_PROBLEMS = ("oidc_unreachable", "oidc_misconfigured")


class OidcError(OrcError):
    """Sign-in or token verification failed; ``code`` is machine-readable."""

    exit_code = EXIT_USAGE

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = 503 if code in ISSUER_PROBLEMS else 401


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None
    algorithms: tuple[str, ...]


def parse_metadata(document: object, issuer: str) -> ProviderMetadata:
    """Validate a discovery document; raise OidcError saying what is wrong with it."""
    if not isinstance(document, dict):
        raise OidcError("oidc_misconfigured", "the discovery document is not a JSON object")
    if str(document.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        raise OidcError(
            "oidc_misconfigured",
            f"the discovery document names issuer {document.get('issuer')!r}, "
            f"not {issuer!r}; set ORC_OIDC_ISSUER to the issuer exactly",
        )
    missing = [
        name
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri")
        if not isinstance(document.get(name), str)
    ]
    if missing:
        raise OidcError("oidc_misconfigured", "the discovery document lacks " + ", ".join(missing))
    offered = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = tuple(a for a in offered if a in ASYMMETRIC_ALGORITHMS)
    if not algorithms:
        raise OidcError(
            "oidc_misconfigured",
            f"the issuer signs ID tokens only with {offered}; orc accepts "
            + ", ".join(ASYMMETRIC_ALGORITHMS),
        )
    return ProviderMetadata(
        issuer=str(document["issuer"]),
        authorization_endpoint=document["authorization_endpoint"],
        token_endpoint=document["token_endpoint"],
        jwks_uri=document["jwks_uri"],
        end_session_endpoint=document.get("end_session_endpoint"),
        algorithms=algorithms,
    )


class OidcProvider:
    """One configured issuer: its metadata and keys, fetched on first need and cached."""

    def __init__(self, settings: Settings) -> None:
        assert settings.oidc_issuer and settings.oidc_client_id
        self.issuer = settings.oidc_issuer
        self.client_id = settings.oidc_client_id
        self.client_secret = settings.oidc_client_secret
        self.redirect_uri = settings.base_url + "/auth/callback"
        self.metadata: ProviderMetadata | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_fetched_at = 0.0
        self._lock = asyncio.Lock()

    def _client(self) -> AsyncOAuth2Client:
        from authlib.integrations.httpx_client import AsyncOAuth2Client

        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            scope=SCOPES,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            timeout=HTTP_TIMEOUT_SECONDS,
        )

    async def _get_json(self, url: str, what: str) -> Any:
        try:
            async with self._client() as client:
                response = await client.request("GET", url, withhold_token=True)
        except Exception as exc:
            raise OidcError(
                "oidc_unreachable", f"cannot reach the OIDC issuer for its {what} ({exc})"
            ) from None
        if response.status_code != 200:
            raise OidcError(
                "oidc_misconfigured",
                f"the OIDC issuer answered {response.status_code} for its {what} at {url}",
            )
        try:
            return response.json()
        except ValueError:
            raise OidcError("oidc_misconfigured", f"the issuer's {what} is not JSON") from None

    async def discover(self) -> ProviderMetadata:
        """Fetch and validate the discovery document (once; again after a failure)."""
        if self.metadata is not None:
            return self.metadata
        async with self._lock:
            if self.metadata is None:
                url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
                document = await self._get_json(url, "discovery document")
                self.metadata = parse_metadata(document, self.issuer)
        return self.metadata

    async def status(self) -> str:
        """``ok`` once discovery has worked, else why it does not (for readiness)."""
        try:
            await asyncio.wait_for(self.discover(), STATUS_TIMEOUT_SECONDS)
        except (OidcError, TimeoutError) as exc:
            return f"error: {exc or 'the issuer did not answer in time'}"
        return "ok"

    async def _key(self, key_id: str | None) -> jwt.PyJWK:
        import jwt

        metadata = await self.discover()
        stale = time.monotonic() - self._keys_fetched_at >= JWKS_REFRESH_MIN_SECONDS
        if (key_id not in self._keys or not self._keys) and stale:
            document = await self._get_json(metadata.jwks_uri, "signing keys")
            try:
                keyset = jwt.PyJWKSet.from_dict(document)
            except jwt.PyJWTError as exc:
                message = f"the issuer's JWKS is unusable: {exc}"
                raise OidcError("oidc_misconfigured", message) from None
            self._keys = {key.key_id or "": key for key in keyset.keys}
            self._keys_fetched_at = time.monotonic()
        if key_id is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        key = self._keys.get(key_id or "")
        if key is None:
            raise OidcError("invalid_token", "the ID token is signed with an unknown key")
        return key

    async def authorization_url(self, state: str, nonce: str, code_verifier: str) -> str:
        """Where to send the browser: the issuer's login, with state, nonce and S256 PKCE."""
        metadata = await self.discover()
        async with self._client() as client:
            url, _ = client.create_authorization_url(
                metadata.authorization_endpoint,
                state=state,
                nonce=nonce,
                code_verifier=code_verifier,
            )
        return str(url)

    async def exchange_code(self, code: str, code_verifier: str) -> str:
        """Trade the authorization code (and the PKCE verifier) for the ID token."""
        metadata = await self.discover()
        try:
            async with self._client() as client:
                token = await client.fetch_token(
                    metadata.token_endpoint,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                )
        except Exception as exc:
            message = f"the issuer refused the code ({exc})"
            raise OidcError("code_exchange_failed", message) from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("code_exchange_failed", "the issuer returned no ID token")
        return id_token

    async def verify_id_token(self, token: str, nonce: str | None = None) -> dict[str, Any]:
        """The claims of a valid ID token for this client; OidcError otherwise."""
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise OidcError("invalid_token", "the ID token is malformed") from None
        metadata = await self.discover()
        algorithm = header.get("alg")
        if algorithm not in metadata.algorithms:
            raise OidcError("invalid_token", f"ID token algorithm {algorithm!r} is not accepted")
        key = await self._key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self.client_id,
                issuer=metadata.issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise OidcError("invalid_token", "the ID token has expired") from None
        except jwt.InvalidAudienceError:
            raise OidcError("invalid_token", "the ID token is for another client") from None
        except jwt.InvalidIssuerError:
            raise OidcError("invalid_token", "the ID token is from another issuer") from None
        except jwt.PyJWTError:
            message = "the ID token's signature or claims are invalid"
            raise OidcError("invalid_token", message) from None
        audience = claims["aud"]
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != self.client_id:
            raise OidcError("invalid_token", "the ID token was issued to another party")
        if nonce is not None:
            presented = claims.get("nonce")
            if not isinstance(presented, str) or not hmac.compare_digest(presented, nonce):
                raise OidcError("invalid_token", "the ID token's nonce does not match this sign-in")
        return claims


def claims_email(claims: dict[str, Any]) -> str:
    """The email of the claims (verified or not: see ``claims_email_verified``), or OidcError."""
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise OidcError("no_email", "the identity provider sent no email address for this account")
    return email


def claims_email_verified(claims: dict[str, Any]) -> bool:
    """Only the JSON boolean ``true`` verifies: ``"false"``, ``"true"``, 1 or a missing claim
    do not (a string that merely looks true is how a hostile provider claims an address)."""
    return claims.get("email_verified") is True
