"""Auth on the local store: orc token generate|create|list|revoke, orc user list|add|role."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import click

from orc.auth.roles import ROLES
from orc.cli.console import pass_database_settings, run_on_database
from orc.config import Settings

DURATION = re.compile(r"^(\d+)([hdw]?)$")
UNIT_HOURS = {"h": 1, "d": 24, "w": 24 * 7, "": 24}


def parse_expiry(text: str) -> timedelta | None:
    """``30d``, ``12h``, ``2w``, ``90`` (days) or ``never``."""
    from orc.auth.access_tokens import MAX_LIFETIME_DAYS

    if text.strip().lower() == "never":
        return None
    match = DURATION.match(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise click.UsageError(
            f"--expires {text!r} is not a duration; use e.g. 12h, 30d, 2w or never"
        )
    hours = int(match.group(1)) * UNIT_HOURS[match.group(2)]
    if hours > 24 * MAX_LIFETIME_DAYS:
        raise click.UsageError(
            f"--expires is longer than {MAX_LIFETIME_DAYS} days; "
            "use never for a token that does not expire"
        )
    return timedelta(hours=hours)


@click.group()
def token() -> None:
    """The server token (generate) and personal access tokens (create, list, revoke)."""


@token.command("generate")
def token_generate() -> None:
    """Print a new random token for ORC_AUTH_TOKEN (or ORC_METRICS_TOKEN, ORC_SECRET_KEY)."""
    from orc.auth.token import generate_token

    click.echo(generate_token())


@token.command("create")
@click.option("--name", required=True, help="What the token is for, e.g. ci or laptop.")
@click.option("--role", type=click.Choice(ROLES), default="member", show_default=True)
@click.option("--expires", default="90d", show_default=True, help="12h, 30d, 2w or never.")
@click.option("--user", "email", help="Make it a token of this user (its role caps the token).")
@pass_database_settings
def token_create(settings: Settings, name: str, role: str, expires: str, email: str | None) -> None:
    """Make a personal access token; it is printed once and never again."""
    from orc.auth.access_tokens import create_access_token
    from orc.db.models import User

    name = name.strip()
    if not name or len(name) > 100:
        raise click.UsageError("--name must have 1 to 100 characters")
    lifetime = parse_expiry(expires)

    async def make() -> tuple[str, str]:
        user = None
        if email is not None:
            user = await User.get_or_none(email=email.strip().lower())
            if user is None:
                raise click.UsageError(f"no user {email}; see orc user list")
        made = await create_access_token(name, role, user, lifetime)
        return made.secret, made.record.role

    secret, granted = run_on_database(settings, make)
    click.echo(secret)
    when = "never expires" if lifetime is None else f"expires in {expires}"
    click.echo(f"token {name!r}, role {granted}, {when}; it is not shown again", err=True)


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_database_settings
def token_list(settings: Settings, as_json: bool) -> None:
    """Access tokens (never their secrets)."""
    from rich.console import Console
    from rich.table import Table

    from orc.auth.access_tokens import describe_access_token, list_access_tokens

    async def tokens() -> list[dict[str, object]]:
        return [describe_access_token(t) for t in await list_access_tokens()]

    rows = run_on_database(settings, tokens)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("id", "name", "role", "user", "state", "expires", "last used", box=None)
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["name"]),
            str(row["role"]),
            str(row["user"] or "-"),
            str(row["state"]),
            str(row["expires_at"] or "never")[:19],
            str(row["last_used_at"] or "never")[:19],
        )
    Console(width=160).print(table)


@token.command("revoke")
@click.argument("reference")
@pass_database_settings
def token_revoke(settings: Settings, reference: str) -> None:
    """Revoke a token by id or name; requests and WebSockets using it are refused at once."""
    from orc.auth.access_tokens import find_access_token, revoke_access_token

    async def revoke() -> tuple[str, bool]:
        found = await find_access_token(reference)
        return found.name, await revoke_access_token(found)

    name, changed = run_on_database(settings, revoke)
    click.echo(f"revoked token {name!r}" if changed else f"token {name!r} was already revoked")


@click.group()
def user() -> None:
    """People who sign in with OIDC, and their roles."""


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_database_settings
def user_list(settings: Settings, as_json: bool) -> None:
    """Users and their roles."""
    from orc.auth.users import describe_user, list_users

    async def users() -> list[dict[str, object]]:
        return [describe_user(u) for u in await list_users()]

    rows = run_on_database(settings, users)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no users yet: the first person to sign in becomes owner")
    for row in rows:
        last = str(row["last_login_at"] or "never")[:19]
        click.echo(f"{row['id']:>4}  {row['email']}  {row['role']}  last sign-in {last}")


@user.command("add")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), default="member", show_default=True)
@pass_database_settings
def user_add(settings: Settings, email: str, role: str) -> None:
    """Add someone before their first sign-in (for ORC_OIDC_CREATE_USERS=false)."""
    from orc.auth.users import add_user

    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise click.UsageError(f"{email!r} is not an email address")
    run_on_database(settings, lambda: add_user(email, role))
    click.echo(f"added {email} as {role}")


@user.command("role")
@click.argument("email")
@click.argument("role", type=click.Choice(ROLES))
@pass_database_settings
def user_role(settings: Settings, email: str, role: str) -> None:
    """Change someone's role (run on the server, this acts as owner)."""
    from orc.auth.users import set_role
    from orc.db.models import User

    async def change() -> None:
        found = await User.get_or_none(email=email.strip().lower())
        if found is None:
            raise click.UsageError(f"no user {email}; see orc user list")
        await set_role(found, role, "owner")

    run_on_database(settings, change)
    click.echo(f"{email} is now {role}")


COMMANDS = (token, user)
