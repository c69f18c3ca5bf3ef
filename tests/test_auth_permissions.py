"""The permission matrix: each role x each protected action, allowed or 403 (401 without auth)."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from orc.api.app import create_app
from orc.api.route_roles import PUBLIC, ROUTE_ROLES
from orc.auth.access_tokens import create_access_token
from orc.auth.users import add_user
from orc.config import load_settings
from orc.db.models import AccessToken, User
from orc.projects.registry import add_project
from tests.in_process import LiveApp
from tests.support import base_env, run_orc

ADMIN_TOKEN = "admin-token-gDDZ4XCV2yxd3saBnNQODCvouzln12x1"
ROLES = ("viewer", "member", "admin", "owner")
_unique = itertools.count(1)


@dataclass
class World:
    live: LiveApp
    tokens: dict[str, str]  # role (and "member2", "admin2") -> access token
    user_ids: dict[str, int]

    @property
    def env(self) -> dict[str, str]:
        return self.live.env

    def request(self, who: str | None, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return self.live.http.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]

    def task_of(self, who: str) -> str:
        response = self.request(who, "POST", "/api/tasks", json={"title": f"t{next(_unique)}"})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def token_of(self, who: str) -> int:
        """A new access token of ``who``'s user (made beside the API: tokens cannot mint tokens)."""
        return self.live.run(_make_token(f"k{next(_unique)}", "member", f"{who}@example.com")).id


async def _make_token(name: str, role: str, email: str) -> AccessToken:
    user = await User.get(email=email)
    return (await create_access_token(name, role, user, None)).record


async def _make_people(people: dict[str, str]) -> tuple[dict[str, str], dict[str, int]]:
    """Users with those roles and a token of each: what `orc user add` and `orc token create` do."""
    tokens, ids = {}, {}
    for name, role in people.items():
        user = await add_user(f"{name}@example.com", role)
        tokens[name] = (await create_access_token(name, role, user, None)).secret
        ids[name] = user.id
    return tokens, ids


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp_path = tmp_path_factory.mktemp("matrix")
    env = base_env(tmp_path)
    env["ORC_AUTH_TOKEN"] = ADMIN_TOKEN
    live = LiveApp(env, cwd=tmp_path)
    people = {
        "owner": "owner",
        "admin": "admin",
        "admin2": "admin",
        "member": "member",
        "member2": "member",
        "viewer": "viewer",
    }
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    try:
        live.run(add_project(repo))  # tasks belong to it, so they can be run
        tokens, ids = live.run(_make_people(people))
        tokens["admin-token"] = ADMIN_TOKEN
        yield World(live, tokens, ids)
    finally:
        live.close()


# (action, expected status for viewer, member, admin, owner, then the request)
Action = Callable[[World, str], httpx.Response]
ALLOWED_ALL = {r: 200 for r in ROLES}


def expect(viewer: int, member: int, admin: int, owner: int) -> dict[str, int]:
    return dict(zip(ROLES, (viewer, member, admin, owner), strict=True))


MATRIX: list[tuple[str, dict[str, int], Action]] = [
    ("list tasks", ALLOWED_ALL, lambda w, r: w.request(r, "GET", "/api/tasks")),
    ("read the task vocabulary", ALLOWED_ALL, lambda w, r: w.request(r, "GET", "/api/vocabulary")),
    ("list projects", ALLOWED_ALL, lambda w, r: w.request(r, "GET", "/api/projects")),
    (
        "register a project",
        expect(403, 403, 200, 200),
        lambda w, r: w.request(
            r, "POST", "/api/projects", json={"path": str(Path(w.env["HOME"]).parent / "repo")}
        ),
    ),
    (
        "read a task's transcript",
        ALLOWED_ALL,
        lambda w, r: w.request(r, "GET", f"/api/tasks/{w.task_of('member')}/transcript"),
    ),
    (
        "read someone's task",
        ALLOWED_ALL,
        lambda w, r: w.request(r, "GET", f"/api/tasks/{w.task_of('member2')}"),
    ),
    (
        "create a task",
        expect(403, 201, 201, 201),
        lambda w, r: w.request(r, "POST", "/api/tasks", json={"title": "new"}),
    ),
    (
        "change own task",
        expect(403, 200, 200, 200),
        lambda w, r: w.request(
            r,
            "PATCH",
            f"/api/tasks/{w.task_of(r if r != 'viewer' else 'member2')}",
            json={"title": "renamed"},
        ),
    ),
    (
        "change someone else's task",
        expect(403, 403, 200, 200),
        lambda w, r: w.request(
            r, "PATCH", f"/api/tasks/{w.task_of('member2')}", json={"title": "renamed"}
        ),
    ),
    (
        "run someone else's task",
        expect(403, 403, 202, 202),
        lambda w, r: w.request(r, "POST", f"/api/tasks/{w.task_of('member2')}/run"),
    ),
    (
        "run own task",
        expect(403, 202, 202, 202),
        lambda w, r: w.request(
            r, "POST", f"/api/tasks/{w.task_of(r if r != 'viewer' else 'member2')}/run"
        ),
    ),
    (
        "delete someone else's task",
        expect(403, 403, 204, 204),
        lambda w, r: w.request(r, "DELETE", f"/api/tasks/{w.task_of('member2')}"),
    ),
    (
        "delete own task",
        expect(403, 204, 204, 204),
        lambda w, r: w.request(
            r, "DELETE", f"/api/tasks/{w.task_of(r if r != 'viewer' else 'member2')}"
        ),
    ),
    (
        "record usage on someone else's task",
        expect(403, 403, 201, 201),
        lambda w, r: w.request(
            r,
            "POST",
            f"/api/tasks/{w.task_of('member2')}/usage",
            json={"model": "claude-sonnet-4", "input_tokens": 5},
        ),
    ),
    ("read cost", ALLOWED_ALL, lambda w, r: w.request(r, "GET", "/api/cost/summary")),
    ("read events", ALLOWED_ALL, lambda w, r: w.request(r, "GET", "/api/events")),
    ("read metrics", ALLOWED_ALL, lambda w, r: w.request(r, "GET", "/api/metrics")),
    ("get a WebSocket ticket", ALLOWED_ALL, lambda w, r: w.request(r, "POST", "/api/ws/ticket")),
    ("list users", expect(403, 403, 200, 200), lambda w, r: w.request(r, "GET", "/api/users")),
    (
        "add a member",
        expect(403, 403, 201, 201),
        lambda w, r: w.request(
            r, "POST", "/api/users", json={"email": f"new{next(_unique)}@example.com"}
        ),
    ),
    (
        "add an admin",
        expect(403, 403, 403, 201),
        lambda w, r: w.request(
            r,
            "POST",
            "/api/users",
            json={"email": f"boss{next(_unique)}@example.com", "role": "admin"},
        ),
    ),
    (
        "set a member's role",
        expect(403, 403, 200, 200),
        lambda w, r: w.request(
            r, "PATCH", f"/api/users/{w.user_ids['member2']}", json={"role": "member"}
        ),
    ),
    (
        "set an admin's role",
        expect(403, 403, 403, 200),
        lambda w, r: w.request(
            r, "PATCH", f"/api/users/{w.user_ids['admin2']}", json={"role": "admin"}
        ),
    ),
    ("list backups", expect(403, 403, 200, 200), lambda w, r: w.request(r, "GET", "/api/backups")),
    (
        "ask for a backup",
        expect(403, 403, 202, 202),
        lambda w, r: w.request(r, "POST", "/api/backups"),
    ),
    # Every caller here uses an access token, and a token cannot mint tokens (a leaked
    # short-lived token must not outlive its revocation). Role caps for signed-in users are
    # tested in test_auth_oidc; the server token may mint (test below).
    (
        "make an own token",
        expect(403, 403, 403, 403),
        lambda w, r: w.request(r, "POST", "/api/tokens", json={"name": "mine"}),
    ),
    ("list tokens", ALLOWED_ALL, lambda w, r: w.request(r, "GET", "/api/tokens")),
    (
        "revoke someone else's token",
        expect(404, 404, 200, 200),
        lambda w, r: w.request(r, "DELETE", f"/api/tokens/{w.token_of('member2')}"),
    ),
    (
        "revoke an own token",
        expect(200, 200, 200, 200),
        lambda w, r: w.request(r, "DELETE", f"/api/tokens/{w.token_of(r)}"),
    ),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("action", "expected", "call"), MATRIX, ids=[m[0] for m in MATRIX])
def test_permission_matrix(world: World, role: str, action: str, expected, call: Action):
    response = call(world, role)
    assert response.status_code == expected[role], f"{role} / {action}: {response.text}"
    if response.status_code == 403:
        assert response.json()["error"] == "forbidden"


# The server token is not a user: it owns no tasks and no tokens of its own.
OWNERLESS = [m for m in MATRIX if " own " not in f" {m[0]} "]


def test_the_server_token_mints_tokens_up_to_admin(world: World):
    made = world.request("admin-token", "POST", "/api/tokens", json={"name": "ci", "role": "admin"})
    assert made.status_code == 201 and made.json()["token"].startswith("orc_pat_")
    owner = world.request("admin-token", "POST", "/api/tokens", json={"name": "x", "role": "owner"})
    assert owner.status_code == 403
    # ... and what it minted cannot mint in turn.
    child = world.live.http.post(
        "/api/tokens",
        json={"name": "grandchild"},
        headers={"Authorization": f"Bearer {made.json()['token']}"},
    )
    assert child.status_code == 403 and "cannot make access tokens" in child.json()["message"]


@pytest.mark.parametrize(("action", "expected", "call"), OWNERLESS, ids=[m[0] for m in OWNERLESS])
def test_the_server_token_acts_as_admin(world: World, action: str, expected, call: Action):
    response = call(world, "admin-token")
    assert response.status_code == expected["admin"], f"admin token / {action}: {response.text}"


def test_without_credentials_every_protected_route_is_401(world: World):
    task = world.task_of("member")
    for method, path in [
        ("GET", "/api/tasks"),
        ("POST", "/api/tasks"),
        ("GET", f"/api/tasks/{task}"),
        ("DELETE", f"/api/tasks/{task}"),
        ("GET", "/api/users"),
        ("GET", "/api/tokens"),
        ("POST", "/api/ws/ticket"),
        ("GET", "/auth/me"),
        ("GET", "/api/metrics"),
        ("GET", "/docs"),
    ]:
        response = world.request(None, method, path)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"] == "unauthorized"


def test_members_see_only_their_own_tokens_admins_see_all(world: World):
    world.token_of("member2")
    mine = world.request("member", "GET", "/api/tokens").json()["items"]
    assert mine and {t["user"] for t in mine} == {"member@example.com"}
    everyone = world.request("admin", "GET", "/api/tokens").json()["items"]
    assert {"member@example.com", "member2@example.com"} <= {t["user"] for t in everyone}
    assert all("token" not in t and "token_hash" not in t for t in everyone)


def test_a_demoted_user_takes_their_tokens_down(world: World):
    made = run_orc(["user", "add", "temp@example.com", "--role", "admin"], world.env)
    assert made.returncode == 0
    secret = run_orc(
        ["token", "create", "--name", "t", "--role", "admin", "--user", "temp@example.com"],
        world.env,
    ).stdout.strip()
    headers = {"Authorization": f"Bearer {secret}"}
    assert world.live.get("/api/users", headers=headers).status_code == 200
    assert run_orc(["user", "role", "temp@example.com", "viewer"], world.env).returncode == 0
    assert world.live.get("/api/users", headers=headers).status_code == 403
    assert world.live.get("/api/tasks", headers=headers).status_code == 200


def test_the_last_owner_cannot_be_demoted(world: World):
    response = world.request(
        "owner", "PATCH", f"/api/users/{world.user_ids['owner']}", json={"role": "admin"}
    )
    assert response.status_code == 403 and "last owner" in response.json()["message"]


def test_every_route_has_a_deliberate_permission(tmp_path: Path):
    """A new route must be added to ROUTE_ROLES (or it is admin-only, which this flags)."""
    app = create_app(load_settings(environ={"ORC_HOME": str(tmp_path)}, cwd=tmp_path))
    names = {route.name.partition(".")[2] for route in app.router.routes}
    undecided = sorted(
        n for n in names if n not in ROUTE_ROLES and not n.startswith(("openapi.", "docs."))
    )
    assert not undecided, f"routes without a decided permission: {undecided}"
    assert ROUTE_ROLES["auth.login"] == PUBLIC
