"""Property-based test of the whole OpenAPI document (schemathesis): no input answers a 5xx.

Against a real `orc serve` (token auth on, so the auth routes and the role rules run too), on
both databases. Two phases:
- every operation on its own, with generated valid and invalid input;
- a stateful phase: schemathesis chains calls along OpenAPI links (a task, token or user made
  by one call is what the next call reads, changes or deletes), so path operations reach real
  rows and real logic instead of stopping at 404.
Bounded (examples, steps, no per-example deadline) to keep the suite's time budget; the seed is
fixed, so a failure replays.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error

from orc.auth.token import generate_token
from tests.support import OrcServer, free_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EXAMPLES_PER_OPERATION = 12
STATEFUL_SCENARIOS = 12
STATEFUL_STEPS = 8
SEED = 12

# OpenAPI links (what a response gives the next call); sanic-ext does not write them, the
# stateful phase needs them. Each: (operation making it, its status, field, operations using it).
TASK_ID = "$response.body#/id"
LINKS: list[tuple[str, str, str, str, str, list[tuple[str, str, str]]]] = [
    (
        "/api/tasks",
        "post",
        "201",
        "task_id",
        TASK_ID,
        [
            ("/api/tasks/{task_id}", "get", "GetTask"),
            ("/api/tasks/{task_id}", "patch", "PatchTask"),
            ("/api/tasks/{task_id}", "delete", "DeleteTask"),
            ("/api/tasks/{task_id}/{action}", "post", "TaskAction"),
            ("/api/tasks/{task_id}/usage", "post", "RecordUsage"),
            ("/api/tasks/{task_id}/usage", "get", "GetUsage"),
            ("/api/tasks/{task_id}/transcript", "get", "GetTranscript"),
            ("/api/tasks/{task_id}/runs/latest", "get", "GetRun"),
        ],
    ),
    (
        "/api/tokens",
        "post",
        "201",
        "token_id",
        TASK_ID,
        [("/api/tokens/{token_id}", "delete", "Revoke")],
    ),
    (
        "/api/users",
        "post",
        "201",
        "user_id",
        TASK_ID,
        [("/api/users/{user_id}", "patch", "SetRole")],
    ),
]


def _with_links(spec: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    paths = spec["paths"]
    for path, method, status, parameter, value, targets in LINKS:
        responses = paths[path][method].setdefault("responses", {})
        links = responses.setdefault(status, {"description": "created"}).setdefault("links", {})
        for target_path, target_method, name in targets:
            links[name] = {
                "operationId": paths[target_path][target_method]["operationId"],
                "parameters": {parameter: value},
            }
    return spec


def _ids_for_the_doc(spec: dict[str, Any]) -> None:
    """sanic-ext's operation ids hold '~' and '.', which OpenAPI allows; keep them."""
    for operations in spec["paths"].values():
        for operation in operations.values():
            assert "operationId" in operation


SKIPPED = {
    # The WebSocket and the OIDC redirects are not JSON request/response operations.
    ("GET", "/api/ws"),
    ("GET", "/auth/callback"),
    # The dashboard page is HTML.
    ("GET", "/"),
}


def _start(server_factory, orc_env: dict[str, str], repo) -> tuple[OrcServer, dict[str, str]]:
    token = generate_token()
    port = free_port()
    env = {
        **orc_env,
        "ORC_AUTH_TOKEN": token,
        "ORC_BASE_URL": f"http://127.0.0.1:{port}",
        "ORC_LOG_LEVEL": "warning",
    }
    server = server_factory(env, "--no-worker", port=port).start()
    auth = {"Authorization": f"Bearer {token}"}
    made = httpx.post(server.base_url + "/api/projects", json={"path": str(repo)}, headers=auth)
    assert made.status_code == 201, made.text
    return server, auth


def test_no_operation_in_the_openapi_document_answers_5xx(server_factory, orc_env, repo):
    server, auth = _start(server_factory, orc_env, repo)
    spec = httpx.get(server.base_url + "/docs/openapi.json", headers=auth, timeout=10).json()
    schema = schemathesis.openapi.from_dict(_with_links(spec))
    schema.config.update(base_url=server.base_url)
    session = requests.Session()
    session.headers.update(auth)
    settings = hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    failures: list[str] = []
    operations = [
        result.ok()
        for result in schema.get_all_operations()
        if (result.ok().method.upper(), result.ok().path) not in SKIPPED
    ]
    assert len(operations) > 25, [op.label for op in operations]
    for operation in operations:

        @settings
        @hypothesis.seed(SEED)
        @hypothesis.given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            response = case.call(session=session, timeout=30)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}\n{case.as_curl_command()}"
                )

        run()

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"session": session, "timeout": 30}

        def validate_response(self, response, case, **kwargs: Any) -> None:
            case.validate_response(response, checks=[not_a_server_error])

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    assert not failures, "\n\n".join(failures[:10])
    # The server stayed healthy and wrote no traceback meanwhile.
    assert server.get("/api/health").status_code == 200
    assert "Traceback" not in server.logs()
