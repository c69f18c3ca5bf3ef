"""Property-based test of the whole OpenAPI document (schemathesis): no input answers a 5xx.

Against a real `orc serve` (token auth on, so the auth routes and the role rules run too), on
both databases, through the schemathesis CLI. Its phases:
- coverage: each operation with boundary and just-out-of-bounds values of every field;
- fuzzing: each operation with generated valid and invalid input;
- stateful: schemathesis chains calls along OpenAPI links (a task, token or user made
  by one call is what the next call reads, changes or deletes), so path operations reach real
  rows and real logic instead of stopping at 404.
Bounded (examples per operation, steps per scenario) to keep the suite's time budget; the seed
is fixed, so a failure replays (`st replay` with the case id it prints). Responses are checked
for 5xx only: the document declares no response schemas to conform to.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orc.auth.token import generate_token
from tests.support import LOOPBACK, OrcServer, free_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EXAMPLES_PER_OPERATION = 6
STATEFUL_STEPS = 10
SEED = 12

# OpenAPI links (what a response gives the next call); sanic-ext does not write them, the
# stateful phase needs them. Each: (operation making it, its status, field, operations using it).
BODY_ID = "$response.body#/id"
LINKS: list[tuple[str, str, str, str, str, list[tuple[str, str, str]]]] = [
    (
        "/api/tasks",
        "post",
        "201",
        "task_id",
        BODY_ID,
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
        BODY_ID,
        [("/api/tokens/{token_id}", "delete", "Revoke")],
    ),
    (
        "/api/users",
        "post",
        "201",
        "user_id",
        BODY_ID,
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


# Not JSON request/response operations: the WebSocket, the OIDC redirect, the HTML page.
SKIPPED_PATHS = ("/api/ws", "/auth/callback", "/")


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
    made = LOOPBACK.post(server.base_url + "/api/projects", json={"path": str(repo)}, headers=auth)
    assert made.status_code == 201, made.text
    return server, auth


# About 30 s of CPU per database here; the limit is for a machine shared with other work.
@pytest.mark.timeout(300)
@pytest.mark.slow(seconds=60)
def test_no_operation_in_the_openapi_document_answers_5xx(
    server_factory, migrated, orc_env, repo, tmp_path: Path
):
    server, auth = _start(server_factory, orc_env, repo)
    spec = LOOPBACK.get(server.base_url + "/docs/openapi.json", headers=auth, timeout=10).json()
    for path in SKIPPED_PATHS:
        del spec["paths"][path]
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(_with_links(spec)))
    config = tmp_path / "schemathesis.toml"
    config.write_text(f"[phases.stateful]\nmax-steps = {STATEFUL_STEPS}\n")
    # The schemathesis CLI runs the phases (stateful included) the way its engine intends,
    # restarting scenarios whose replays differ, which a server with state makes inevitable.
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            f"--config-file={config}",
            "run",
            str(document),
            f"--url={server.base_url}",
            f"--header=Authorization: {auth['Authorization']}",
            "--checks=not_a_server_error",
            "--phases=examples,coverage,fuzzing,stateful",
            f"--max-examples={EXAMPLES_PER_OPERATION}",
            f"--seed={SEED}",
            "--workers=1",
            "--generation-database=none",
            "--request-timeout=30",
            "--suppress-health-check=all",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    summary = result.stdout
    assert "Stateful" in summary or "stateful" in summary, summary[-3000:]
    # The server stayed healthy and wrote no traceback meanwhile.
    assert server.get("/api/health").status_code == 200
    assert "Traceback" not in server.logs()
