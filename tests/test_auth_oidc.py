"""Tier 3: OIDC sign-in against a real provider on loopback, and every way it must fail."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
import websockets

from tests.in_process import LiveApp
from tests.oidc_provider import Provider, run_provider, s256
from tests.oidc_provider import oidc_env as provider_env
from tests.support import base_env, free_port, run_orc

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CLIENT_ID = "orc-test"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with run_provider() as running:
        yield running


def oidc_env(tmp_path: Path, provider: Provider, port: int, **extra: str) -> dict[str, str]:
    extra = {"ORC_OIDC_ADMIN_EMAILS": "boss@example.com", "ORC_LOG_LEVEL": "info", **extra}
    return provider_env(base_env(tmp_path), provider, port, CLIENT_ID, **extra)


@pytest.fixture(scope="module")
def orc(provider: Provider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """One SQLite-backed app in-process for the refusal tests (they create no conflicting state)."""
    tmp_path = tmp_path_factory.mktemp("oidc")
    live = LiveApp(oidc_env(tmp_path, provider, free_port()), cwd=tmp_path)
    yield live
    live.close()


def begin(client: httpx.Client, return_to: str | None = None) -> str:
    """GET /auth/login; returns the provider URL orc redirects to."""
    params = {"return_to": return_to} if return_to else None
    response = client.get("/auth/login", params=params)
    assert response.status_code == 302, response.text
    return response.headers["location"]


def consent(authorize_url: str, sub: str) -> str:
    """The person picks an account at the provider; returns the callback URL it redirects to."""
    response = httpx.post(authorize_url, data={"sub": sub}, timeout=10)
    assert response.status_code == 302, response.text
    return response.headers["location"]


def sign_in(base_url: str, email: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=10)
    finish = client.get(consent(begin(client), email))
    assert finish.status_code == 302, finish.text
    assert "orc_session" in client.cookies
    return client


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


# --- the whole flow, on both databases -------------------------------------------------------


def test_sign_in_roles_api_websocket_and_logout(
    provider: Provider, server_factory, tmp_path: Path, database_url: str
):
    port = free_port()
    env = oidc_env(tmp_path, provider, port, DATABASE_URL=database_url)
    server = server_factory(env, "--no-worker", port=port).start()
    base = server.base_url

    owner = sign_in(base, "first@example.com")
    admin = sign_in(base, "boss@example.com")
    member = sign_in(base, "carol@example.com")
    assert owner.get("/auth/me").json()["role"] == "owner"  # the first user ever
    assert admin.get("/auth/me").json()["role"] == "admin"  # listed in ORC_OIDC_ADMIN_EMAILS
    me = member.get("/auth/me").json()
    assert (me["subject"], me["role"], me["via"]) == ("carol@example.com", "member", "session")

    # The session opens the API; changes need our Origin or the session's CSRF token.
    assert member.get("/api/tasks").status_code == 200
    refused = member.post("/api/tasks", json={"title": "no origin"})
    assert refused.status_code == 403 and refused.json()["error"] == "csrf_failed"
    evil = member.post("/api/tasks", json={"title": "x"}, headers={"Origin": "https://evil.test"})
    assert evil.status_code == 403
    created = member.post("/api/tasks", json={"title": "mine"}, headers={"Origin": base})
    assert created.status_code == 201 and created.json()["created_by"] == "carol@example.com"
    with_csrf = member.post(
        "/api/tasks", json={"title": "via header"}, headers={"X-CSRF-Token": me["csrf_token"]}
    )
    assert with_csrf.status_code == 201

    # A signed-in member makes access tokens up to their own role, not above.
    above = member.post(
        "/api/tokens", json={"name": "x", "role": "admin"}, headers={"Origin": base}
    )
    assert above.status_code == 403
    own = member.post("/api/tokens", json={"name": "laptop"}, headers={"Origin": base})
    assert own.status_code == 201 and own.json()["role"] == "member"
    assert own.json()["user"] == "carol@example.com"

    cookie = member.cookies["orc_session"]
    ws_url = f"ws://127.0.0.1:{port}/api/ws"

    async def websocket_checks() -> None:
        headers = {"Cookie": f"orc_session={cookie}"}
        # Cross-site WebSocket hijacking: the cookie alone, from another origin, is refused.
        with pytest.raises(websockets.InvalidStatus) as hijack:
            async with websockets.connect(
                ws_url, additional_headers=headers, origin="https://evil.test"
            ):
                pass
        assert hijack.value.response.status_code == 403
        async with websockets.connect(ws_url, additional_headers=headers, origin=base) as ws:
            await ws.send(json.dumps({"type": "subscribe"}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
            # Signing out ends the session everywhere: this socket is closed by the server.
            out = await asyncio.to_thread(
                member.post, "/auth/logout", json={}, headers={"Origin": base}
            )
            assert out.status_code == 200 and out.json()["signed_out"] is True
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(5):
                    while True:
                        await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401

        # A browser's way in: a single-use ticket.
        ticket = owner.post("/api/ws/ticket", headers={"Origin": base}).json()["ticket"]
        async with websockets.connect(f"{ws_url}?ticket={ticket}") as ws:
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await ws.recv())["type"] == "pong"
        with pytest.raises(websockets.InvalidStatus) as reused:
            async with websockets.connect(f"{ws_url}?ticket={ticket}"):
                pass
        assert reused.value.response.status_code == 401

    asyncio.run(websocket_checks())

    # The old cookie is dead even if someone kept a copy.
    stolen = httpx.get(base + "/auth/me", cookies={"orc_session": cookie}, timeout=10)
    assert stolen.status_code == 401
    # orc user list shows what happened.
    listed = run_orc(["user", "list", "--json"], env)
    roles = {u["email"]: u["role"] for u in json.loads(listed.stdout)}
    assert roles == {
        "first@example.com": "owner",
        "boss@example.com": "admin",
        "carol@example.com": "member",
    }


# --- what orc sends, and the refusals at the callback ----------------------------------------


def test_login_sends_state_nonce_and_s256_challenge_and_proves_the_verifier(
    orc: LiveApp, provider: Provider
):
    client = orc.client()
    url = begin(client)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(provider.issuer + "/oauth2/authorize")
    assert query["response_type"] == "code" and query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == orc.base_url + "/auth/callback"
    assert query["code_challenge_method"] == "S256"
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32
    assert set(query["scope"].split()) >= {"openid", "email"}
    finish = client.get(consent(url, "dave@example.com"))
    assert finish.status_code == 302
    # The provider saw a verifier whose S256 is the challenge (and refuses a mismatch, below).
    verifier = provider.enforcer.token_requests[-1]["code_verifier"][0]
    assert s256(verifier) == query["code_challenge"]


def test_a_changed_code_challenge_fails_the_exchange(orc: LiveApp):
    client = orc.client()
    forged = with_query(begin(client), code_challenge=s256("attacker-chosen-verifier" * 2))
    finish = client.get(consent(forged, "erin@example.com"))
    assert finish.status_code == 401 and finish.json()["error"] == "code_exchange_failed"
    assert "orc_session" not in client.cookies


def test_a_wrong_nonce_is_refused(orc: LiveApp):
    client = orc.client()
    forged = with_query(begin(client), nonce="a-nonce-orc-never-sent")
    finish = client.get(consent(forged, "frank@example.com"))
    assert finish.status_code == 401 and "nonce" in finish.json()["message"]
    assert "orc_session" not in client.cookies


def test_a_missing_state_is_refused(orc: LiveApp):
    client = orc.client()
    callback = consent(begin(client), "gina@example.com")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    response = client.get("/auth/callback", params={"code": code})
    assert response.status_code == 400 and response.json()["error"] == "missing_state"


def test_a_replayed_callback_is_refused(orc: LiveApp):
    client = orc.client()
    url = begin(client)
    state = parse_qs(urlsplit(url).query)["state"][0]
    callback = consent(url, "hank@example.com")
    assert client.get(callback).status_code == 302
    replay = orc.client(cookies={"orc_login": state}).get(callback)
    assert replay.status_code == 400 and replay.json()["error"] == "unknown_state"
    assert "orc_session" not in replay.cookies


def test_a_callback_in_another_browser_is_refused(orc: LiveApp):
    victim = orc.client()
    callback = consent(begin(orc.client()), "ivan@example.com")
    response = victim.get(callback)  # login CSRF: the attacker's sign-in in the victim's browser
    assert response.status_code == 400 and response.json()["error"] == "state_mismatch"


def test_an_email_outside_the_allowed_domains_is_refused(orc: LiveApp):
    client = orc.client()
    finish = client.get(consent(begin(client), "mallory@evil.org"))
    assert finish.status_code == 403 and finish.json()["error"] == "domain_not_allowed"
    assert "orc_session" not in client.cookies


def test_after_sign_in_only_local_paths_are_redirected_to(orc: LiveApp):
    cases = (("/tasks?x=1", "/tasks?x=1"), ("https://evil.test/", "/"), ("//evil.test", "/"))
    for target, expected in cases:
        client = orc.client()
        finish = client.get(consent(begin(client, return_to=target), "judy@example.com"))
        assert finish.headers["location"] == expected


def test_session_cookie_flags(orc: LiveApp):
    client = orc.client()
    finish = client.get(consent(begin(client), "kim@example.com"))
    cookie = next(v for v in finish.headers.get_list("set-cookie") if v.startswith("orc_session="))
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "max-age", "samesite"} <= flags
    assert "samesite=lax" in cookie.lower() and "max-age=86400" in cookie.lower()
    assert "secure" not in flags  # ORC_BASE_URL is http here; https turns Secure on (unit test)


# --- bearer ID tokens: a real one works, each defect is refused ------------------------------


def _me(orc: LiveApp, token: str) -> httpx.Response:
    return orc.get("/auth/me", headers={"Authorization": f"Bearer {token}"})


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_real_id_token_from_the_issuer_is_accepted(orc: LiveApp, provider: Provider):
    response = _me(orc, provider.id_token(CLIENT_ID, "liam@example.com"))
    assert response.status_code == 200, response.text
    assert response.json()["subject"] == "liam@example.com"
    assert response.json()["via"] == "id_token"


def _forged(provider: Provider, defect: str) -> str:
    sub = "mia@example.com"
    if defect == "tampered signature":
        token = provider.id_token(CLIENT_ID, sub)
        head, body, signature = token.split(".")
        flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
        return f"{head}.{body}.{flipped}"
    if defect == "tampered claims":
        head, _, signature = provider.id_token(CLIENT_ID, sub).split(".")
        return f"{head}.{_b64(provider.claims(CLIENT_ID, 'owner@example.com'))}.{signature}"
    if defect == "wrong audience":
        return provider.id_token("some-other-app", sub)
    if defect == "wrong issuer":
        return provider.id_token(CLIENT_ID, sub, base=f"http://127.0.0.1:{provider.port}")
    if defect == "expired":
        past = int(time.time()) - 3600
        return provider.forge(provider.claims(CLIENT_ID, sub, iat=past - 60, exp=past))
    if defect == "no expiry":
        claims = provider.claims(CLIENT_ID, sub)
        del claims["exp"]
        return provider.forge(claims)
    if defect == "alg none":
        return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(provider.claims(CLIENT_ID, sub))}."
    if defect == "hs256 with the public key":
        # The classic confusion attack: the public key, used as an HMAC secret.
        public = httpx.get(provider.issuer + "/jwks", timeout=5).content
        kid = provider.private_key()[1]
        header, claims = _b64({"alg": "HS256", "kid": kid}), _b64(provider.claims(CLIENT_ID, sub))
        signing_input = f"{header}.{claims}"
        mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    if defect == "another issuer's key":
        with run_provider() as other:
            claims = provider.claims(CLIENT_ID, sub)
            return other.forge(claims)
    raise AssertionError(defect)


# Each defect and the reason orc must give (so a refusal for another reason fails the test).
DEFECTS = {
    "tampered signature": "signature",
    "tampered claims": "signature",
    "wrong audience": "another client",
    "wrong issuer": "another issuer",
    "expired": "expired",
    "no expiry": "claims are invalid",
    "alg none": "algorithm 'none'",
    "hs256 with the public key": "algorithm 'HS256'",
    "another issuer's key": "unknown key",
}


@pytest.mark.parametrize("defect", DEFECTS)
def test_a_defective_id_token_is_refused(orc: LiveApp, provider: Provider, defect: str):
    response = _me(orc, _forged(provider, defect))
    assert response.status_code == 401, f"{defect}: {response.status_code} {response.text}"
    assert response.json()["error"] == "unauthorized"
    assert DEFECTS[defect] in response.json()["message"]


def test_a_forged_but_correct_token_is_accepted_so_the_refusals_above_mean_something(
    orc: LiveApp, provider: Provider
):
    token = provider.forge(provider.claims(CLIENT_ID, "nina@example.com"))
    assert _me(orc, token).status_code == 200


def test_a_string_email_verified_is_not_verified(orc: LiveApp, provider: Provider):
    """A hostile provider's token for another subject with the admin's address and
    ``"email_verified": "false"`` is refused under the allow-list, and never becomes admin."""
    claims = provider.claims(CLIENT_ID, "hostile-sub", email="boss@example.com")
    caller = orc.client("127.0.0.33")  # its own failure budget (the module's app is shared)
    for claimed in ("false", "true", 1):
        token = provider.forge({**claims, "email_verified": claimed})
        response = caller.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, response.text
        assert "not verified" in response.json()["message"]
    client = orc.client()
    provider_url = begin(client)
    httpx.put(
        f"{provider.issuer}/users/hostile-2",
        json={"email": "boss@example.com", "email_verified": "false"},
        timeout=5,
    )
    finish = client.get(consent(provider_url, "hostile-2"))
    assert finish.status_code == 403 and finish.json()["error"] == "email_not_verified"
    assert "orc_session" not in client.cookies


@pytest.mark.parametrize("email", ["x@evil@example.com", '"x@evil"@example.com'])
def test_an_address_that_is_not_one_valid_email_is_refused(orc: LiveApp, email: str):
    client = orc.client()
    finish = client.get(consent(begin(client), email))
    assert finish.status_code == 403 and finish.json()["error"] == "invalid_email"
    assert "not a valid email address" in finish.json()["message"]
    assert "orc_session" not in client.cookies


def test_sign_ins_started_from_one_address_are_bounded(orc: LiveApp):
    """/auth/login stores a row per request before anyone is known: not without limit (the
    total bound is tested on both databases in test_auth_store.py)."""
    from orc.api.auth_gate import LOGIN_STARTS_PER_ADDRESS
    from orc.db.models import OidcLogin

    async def pending() -> int:
        return await OidcLogin.all().count()

    before = orc.run(pending())
    flood = orc.client("127.0.0.31")
    for _ in range(LOGIN_STARTS_PER_ADDRESS):
        assert flood.get("/auth/login").status_code == 302
    refused = flood.get("/auth/login")
    assert refused.status_code == 429 and refused.json()["error"] == "too_many_sign_ins"
    assert 1 <= int(refused.headers["retry-after"]) <= 600
    assert orc.run(pending()) == before + LOGIN_STARTS_PER_ADDRESS
    assert orc.client("127.0.0.32").get("/auth/login").status_code == 302


# --- start-up ----------------------------------------------------------------------------------


def test_unreachable_issuer_starts_and_readiness_says_so(server_factory, tmp_path: Path):
    port = free_port()
    env = base_env(tmp_path)
    env.update(
        ORC_AUTH_TYPE="oidc",
        ORC_OIDC_ISSUER=f"http://127.0.0.1:{free_port()}",
        ORC_OIDC_CLIENT_ID=CLIENT_ID,
        ORC_OIDC_CLIENT_SECRET="client-secret-value",
        ORC_BASE_URL=f"http://127.0.0.1:{port}",
    )
    server = server_factory(env, "--no-worker", port=port).start()
    ready = server.get("/api/health/ready").json()
    assert ready["info"]["oidc"].startswith("error: cannot reach the OIDC issuer")
    login = server.get("/auth/login")
    assert login.status_code == 503 and login.json()["error"] == "oidc_unreachable"


def test_misconfigured_issuer_refuses_to_start(provider: Provider, tmp_path: Path):
    env = base_env(tmp_path)
    env.update(
        ORC_AUTH_TYPE="oidc",
        ORC_OIDC_ISSUER=provider.issuer + "/not-an-issuer",
        ORC_OIDC_CLIENT_ID=CLIENT_ID,
        ORC_OIDC_CLIENT_SECRET="client-secret-value",
    )
    result = run_orc(["serve", "--port", str(free_port())], env)
    assert result.returncode == 2
    assert "ORC_OIDC_ISSUER=" in result.stderr and "404" in result.stderr
    assert "Traceback" not in result.stderr
