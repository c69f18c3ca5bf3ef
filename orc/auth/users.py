"""Users: who may sign in, which role they get, and who may change roles."""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError

from orc.auth.roles import ROLES, at_least
from orc.config import Settings
from orc.db.models import User
from orc.db.sql import locked_transaction
from orc.errors import EXIT_USAGE, OrcError

USER_LOCK_KEY = 0x6F7263_04


class SignInRefused(OrcError):
    """This person may not sign in; the message says why (shown to them)."""

    status = 403
    exit_code = EXIT_USAGE

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class RoleChangeRefused(OrcError):
    """The role change is not allowed; the message says why."""

    status = 403
    code = "forbidden"
    exit_code = EXIT_USAGE


class InvalidEmail(OrcError):
    """Not one valid email address (a second ``@``, quotes, an IP literal, bad characters)."""

    status = 422
    code = "invalid_email"
    exit_code = EXIT_USAGE


def parse_email(raw: str) -> tuple[str, str]:
    """``(address, domain)`` of one strictly valid address, lower case; InvalidEmail otherwise.

    email-validator parses by RFC 5322/6531 without quoted local parts or IP literals, so a
    domain check cannot be fooled by ``x@evil@example.com`` or ``"x@evil"@example.com``.
    No DNS lookup: ``globally_deliverable=False`` keeps internal domains (corp.internal) valid.
    """
    # Imported here: only sign-in and user commands parse addresses (it compiles its
    # expressions at import).
    from email_validator import EmailNotValidError, validate_email

    try:
        parsed = validate_email(raw, check_deliverability=False, globally_deliverable=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(f"{raw[:320]!r} is not a valid email address: {exc}") from None
    return parsed.normalized.lower(), parsed.ascii_domain.lower()


def check_email_allowed(email: str, verified: bool, settings: Settings) -> str:
    """The address, lower case; SignInRefused when it may not sign in under
    ORC_OIDC_ALLOWED_DOMAINS (not a valid address, not verified, or another domain)."""
    try:
        address, domain = parse_email(email)
    except InvalidEmail as exc:
        raise SignInRefused("invalid_email", exc.message) from None
    allowed = settings.oidc_allowed_domains
    if not allowed:
        return address
    if not verified:
        raise SignInRefused(
            "email_not_verified",
            f"{address} is not verified at the identity provider; verify it there, then sign in",
        )
    if domain not in allowed and address.rpartition("@")[2] not in allowed:
        raise SignInRefused(
            "domain_not_allowed", f"sign-in with an address at {domain} is not allowed"
        )
    return address


def _column_length(name: str) -> int:
    return int(User._meta.fields_map[name].max_length)  # type: ignore[attr-defined]


def check_claim_length(claim: str, value: str) -> None:
    """SignInRefused when a claim that identifies the person (so cannot be cut) is longer than
    its column."""
    limit = _column_length(claim)
    if len(value) > limit:
        raise SignInRefused(
            "claim_too_long",
            f"the identity provider's {claim} is longer than {limit} characters;"
            " orc cannot store it",
        )


def fit_claims(subject: str, email: str, name: str) -> str:
    """The display name cut to its column, after checking the subject and email fit theirs."""
    check_claim_length("subject", subject)
    check_claim_length("email", email)
    return name[: _column_length("name")]


async def sign_in_user(
    subject: str, email: str, name: str, settings: Settings, email_verified: bool
) -> User:
    """Find or create the user behind verified OIDC claims and apply the role rules.

    An address the provider has not verified (``email_verified`` not ``true``) never links
    to an existing account, never passes the domain allow-list and never makes an admin.
    """
    name = fit_claims(subject, email, name)
    email = check_email_allowed(email, email_verified, settings)
    now = datetime.now(UTC)
    # One at a time: of two people signing in first at the same moment, only one is owner.
    async with locked_transaction(USER_LOCK_KEY) as conn:
        user = await User.filter(subject=subject).using_db(conn).first()
        if user is None:
            user = await User.filter(email=email).using_db(conn).first()
            if user is not None and user.subject not in (None, subject):
                raise SignInRefused(
                    "account_conflict", f"{email} is already linked to another account"
                )
            if user is not None and not email_verified:
                raise SignInRefused(
                    "email_not_verified",
                    f"{email} has an orc account, but the identity provider has not verified "
                    "this address; verify it there, then sign in",
                )
        if user is None:
            if not settings.oidc_create_users and await User.all().using_db(conn).exists():
                raise SignInRefused(
                    "not_registered", f"{email} has no orc account; ask an admin to add you"
                )
            first = not await User.all().using_db(conn).exists()
            role = "owner" if first else "member"
            user = await User.create(
                email=email, subject=subject, name=name, role=role, using_db=conn
            )
        user.subject = subject
        user.email = email
        user.name = name or user.name
        admin_email = email_verified and email in settings.oidc_admin_emails
        if admin_email and not at_least(user.role, "admin"):
            user.role = "admin"
        user.last_login_at = now
        try:
            await user.save(using_db=conn)
        except IntegrityError:
            # The new email from the provider belongs to another account (added beforehand).
            raise SignInRefused(
                "account_conflict", f"{email} is already linked to another account"
            ) from None
    return user


class UserExists(OrcError):
    """Someone with that email already has an account."""

    status = 409
    code = "user_exists"
    exit_code = EXIT_USAGE

    def __init__(self, email: str) -> None:
        super().__init__(f"{email} already has an account")


async def add_user(email: str, role: str) -> User:
    """Add someone before their first sign-in; UserExists if the email is taken."""
    address, _ = parse_email(email.strip())
    try:
        return await User.create(email=address, role=role)
    except IntegrityError:
        raise UserExists(email) from None


async def list_users() -> list[User]:
    return await User.all().order_by("id")


async def set_role(user: User, role: str, changed_by_role: str) -> User:
    """Change a user's role within what ``changed_by_role`` may grant."""
    if role not in ROLES:
        raise RoleChangeRefused(f"{role!r} is not a role; use one of {', '.join(ROLES)}")
    async with locked_transaction(USER_LOCK_KEY) as conn:
        # Read the role again under the lock: a concurrent change must not slip past the rules.
        await user.refresh_from_db(using_db=conn)
        # Admins manage members and viewers; only an owner changes who is admin or owner.
        if changed_by_role != "owner" and (at_least(user.role, "admin") or at_least(role, "admin")):
            raise RoleChangeRefused("only an owner can change the role of an admin or owner")
        if user.role == "owner" and role != "owner":
            owners = await User.filter(role="owner").using_db(conn).count()
            if owners <= 1:
                raise RoleChangeRefused(
                    f"{user.email} is the last owner; make someone else owner first"
                )
        user.role = role
        await user.save(using_db=conn, update_fields=["role"])
    return user


def describe_user(user: User) -> dict[str, object]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "created_at": user.created_at.isoformat(),
        "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
    }
