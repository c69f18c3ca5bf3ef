"""Auth state in the database, on SQLite and PostgreSQL: sessions, sign-ins, tokens, users."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from orc.auth.access_tokens import access_token_identity, create_access_token
from orc.auth.cleanup import prune_auth_state
from orc.auth.sessions import create_session, session_identity
from orc.auth.signing import sha256_hex
from orc.auth.token import server_token_credential
from orc.auth.users import SignInRefused, sign_in_user
from orc.config import load_settings
from orc.db.models import AccessToken, AuthSession, OidcLogin, User


async def test_ended_sessions_and_abandoned_sign_ins_are_pruned(store):
    now = datetime.now(UTC)
    live = await create_session("a@example.com", "admin", None)
    expired = await create_session("b@example.com", "admin", None)
    revoked = await create_session("c@example.com", "admin", None)
    await AuthSession.filter(id_hash=sha256_hex(expired)).update(
        expires_at=now - timedelta(hours=1)
    )
    await AuthSession.filter(id_hash=sha256_hex(revoked)).update(revoked_at=now - timedelta(days=2))
    await OidcLogin.create(state_hash="old", nonce="n", code_verifier="v")
    await OidcLogin.filter(state_hash="old").update(created_at=now - timedelta(minutes=11))
    await OidcLogin.create(state_hash="fresh", nonce="n", code_verifier="v")

    assert await prune_auth_state(now) == {"sessions": 2, "logins": 1}
    assert await session_identity(live, None) is not None
    assert await AuthSession.all().count() == 1
    assert [login.state_hash for login in await OidcLogin.all()] == ["fresh"]


async def test_sessions_bought_with_the_server_token_end_when_it_is_rotated(store):
    old, new = "o" * 40, "n" * 40
    session = await create_session("admin-token", "admin", None, server_token_credential(old))
    identity = await session_identity(session, old)
    assert identity is not None and identity.role == "admin"
    assert await session_identity(session, new) is None
    assert await session_identity(session, None) is None
    stored = await AuthSession.get(id_hash=sha256_hex(session))
    assert old not in (stored.credential or "")


async def test_access_tokens_are_stored_hashed_and_expire(store):
    made = await create_access_token("ci", "member", None, timedelta(days=1))
    stored = await AccessToken.get(id=made.record.id)
    assert made.secret.startswith("orc_pat_") and made.secret not in stored.token_hash
    assert stored.token_hash == sha256_hex(made.secret)
    identity = await access_token_identity(made.secret, None)
    assert identity is not None and identity.role == "member"
    assert (await AccessToken.get(id=stored.id)).last_used_at is not None
    await AccessToken.filter(id=stored.id).update(expires_at=datetime.now(UTC) - timedelta(1))
    assert await access_token_identity(made.secret, None) is None


async def test_two_first_sign_ins_at_once_make_one_owner(store, tmp_path):
    settings = load_settings(environ={"ORC_HOME": str(tmp_path)}, cwd=tmp_path)
    users = await asyncio.gather(
        *(sign_in_user(f"sub-{i}", f"u{i}@example.com", "", settings, True) for i in range(6))
    )
    assert sorted(u.role for u in users) == ["member"] * 5 + ["owner"]


async def test_refused_sign_ins(store, tmp_path):
    settings = load_settings(
        environ={
            "ORC_HOME": str(tmp_path),
            "ORC_OIDC_CREATE_USERS": "false",
            "ORC_OIDC_ALLOWED_DOMAINS": "example.com",
        },
        cwd=tmp_path,
    )
    await User.create(email="known@example.com", role="viewer")
    with pytest.raises(SignInRefused) as unknown:
        await sign_in_user("s1", "stranger@example.com", "", settings, True)
    assert unknown.value.code == "not_registered"
    with pytest.raises(SignInRefused) as domain:
        await sign_in_user("s2", "known@elsewhere.org", "", settings, True)
    assert domain.value.code == "domain_not_allowed"
    known = await sign_in_user("s3", "Known@Example.com", "K", settings, True)
    assert (known.email, known.role, known.subject) == ("known@example.com", "viewer", "s3")
    # Someone else's subject cannot take over that account by presenting the same email.
    with pytest.raises(SignInRefused) as conflict:
        await sign_in_user("s4", "known@example.com", "", settings, True)
    assert conflict.value.code == "account_conflict"


@pytest.mark.parametrize("claimed", ["false", "true", 1, None])
async def test_only_a_boolean_true_verifies_an_email(store, tmp_path, claimed):
    """A provider's ``"email_verified": "false"`` (or a missing claim) proves nothing: such an
    address is not admin by ORC_OIDC_ADMIN_EMAILS, does not link to an account made for it,
    and does not pass a domain allow-list."""
    from orc.auth.oidc import claims_email_verified

    verified = claims_email_verified({"email_verified": claimed} if claimed is not None else {})
    assert verified is False
    env = {"ORC_HOME": str(tmp_path), "ORC_OIDC_ADMIN_EMAILS": "boss@example.com"}
    settings = load_settings(environ=env, cwd=tmp_path)
    await sign_in_user("first", "first@example.com", "", settings, True)  # the owner
    impostor = await sign_in_user("other", "boss@example.com", "", settings, verified)
    assert impostor.role == "member"
    await User.create(email="added@example.com", role="admin")
    with pytest.raises(SignInRefused) as linking:
        await sign_in_user("sub-x", "added@example.com", "", settings, verified)
    assert linking.value.code == "email_not_verified" and linking.value.status == 403
    listed = load_settings(environ={**env, "ORC_OIDC_ALLOWED_DOMAINS": "example.com"}, cwd=tmp_path)
    with pytest.raises(SignInRefused) as allow_list:
        await sign_in_user("sub-y", "new@example.com", "", listed, verified)
    assert allow_list.value.code == "email_not_verified"
    # The same claims with a real true pass all three.
    boss = await sign_in_user("boss", "boss2@example.com", "", settings, True)
    assert boss.role == "member"
    assert (await sign_in_user("sub-x", "added@example.com", "", settings, True)).role == "admin"


@pytest.mark.parametrize(
    "email",
    [
        "x@evil@example.com",
        '"x@evil"@example.com',
        "x@[127.0.0.1]",
        "x@example.com.",
        "x@exa mple.com",
        "x@evil.com\n@example.com",
        "@example.com",
    ],
)
async def test_the_domain_allow_list_reads_one_strictly_valid_address(store, tmp_path, email):
    env = {"ORC_HOME": str(tmp_path), "ORC_OIDC_ALLOWED_DOMAINS": "example.com"}
    settings = load_settings(environ=env, cwd=tmp_path)
    with pytest.raises(SignInRefused) as refused:
        await sign_in_user("sub", email, "", settings, True)
    assert refused.value.status == 403
    assert refused.value.code == "invalid_email"
    assert "not a valid email address" in refused.value.message
    assert await User.all().count() == 0
    # The domain check itself compares the parsed domain, case-insensitively.
    user = await sign_in_user("sub", "Ana@EXAMPLE.com", "", settings, True)
    assert user.email == "ana@example.com"


async def test_pending_sign_ins_are_bounded_in_total(store):
    from orc.auth.cleanup import LOGIN_LIFETIME, room_for_login
    from orc.db.models import OidcLogin

    now = datetime.now(UTC)
    for n in range(3):
        await OidcLogin.create(state_hash=f"old-{n}", nonce="n", code_verifier="v")
    await OidcLogin.all().update(created_at=now - LOGIN_LIFETIME - timedelta(seconds=1))
    await OidcLogin.create(state_hash="fresh-0", nonce="n", code_verifier="v")
    assert await room_for_login(now, limit=2)  # the abandoned ones made room
    assert await OidcLogin.all().count() == 1
    await OidcLogin.create(state_hash="fresh-1", nonce="n", code_verifier="v")
    assert not await room_for_login(now, limit=2)
    assert await OidcLogin.all().count() == 2
