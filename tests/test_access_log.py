"""The access log of a real `orc serve`: off the request path, complete and in order at shutdown."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import threading
import time
from typing import Any

import httpx

from tests.support import LOOPBACK, ORC, free_port

CLIENTS = 4
REQUESTS_EACH = 300  # 1,200 lines of about 300 bytes: far more than a pipe holds (64 KiB)


def _start(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """`orc serve --no-worker` with its output on a pipe that nobody reads until it exits."""
    port = free_port()
    process = subprocess.Popen(
        [*ORC, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0].decode(errors="replace")
        try:
            if LOOPBACK.get(base + "/api/tasks", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    process.kill()
    raise AssertionError("orc serve did not answer")


def _records(output: bytes) -> list[dict[str, Any]]:
    records = []
    for line in output.decode(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def test_every_line_arrives_in_order_when_stderr_is_stalled_and_at_shutdown(migrated, sqlite_env):
    """The server keeps answering while nobody reads its output (before, it froze once the pipe
    was full), and after SIGTERM every request's line is there, each client's in order."""
    env = dict(sqlite_env, ORC_LOG_LEVEL="info", ORC_ACCESS_LOG_PROBES="true")
    process, base = _start(env)
    failures: list[str] = []

    def client(k: int) -> None:
        with httpx.Client(base_url=base, timeout=20) as http:
            for i in range(REQUESTS_EACH):
                response = http.get("/api/health", headers={"X-Request-ID": f"load-{k}-{i}"})
                if response.status_code != 200:
                    failures.append(f"{k}-{i}: {response.status_code}")

    try:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    ids = [r["request_id"] for r in _records(output) if r.get("logger") == "orc.access"]
    ours = [i for i in ids if i.startswith("load-")]
    assert len(ours) == CLIENTS * REQUESTS_EACH == len(set(ours))
    for k in range(CLIENTS):
        seen = [int(i.rsplit("-", 1)[1]) for i in ours if i.startswith(f"load-{k}-")]
        assert seen == list(range(REQUESTS_EACH))


def test_probes_are_left_out_of_the_access_log_by_default(server_factory, migrated, sqlite_env):
    server = server_factory(dict(sqlite_env, ORC_LOG_LEVEL="info")).start()
    for path in ("/api/health", "/api/health/ready", "/api/metrics", "/api/tasks"):
        assert server.get(path, headers={"X-Request-ID": f"probe{path}"}).status_code == 200
    server.terminate()
    logged = {r["path"] for r in server.log_records() if r.get("logger") == "orc.access"}
    assert logged == {"/api/tasks"}


def test_every_api_worker_process_writes_access_lines(server_factory, migrated, sqlite_env):
    """With --workers 2 the spawned API processes log too (before, their lines were lost)."""
    server = server_factory(sqlite_env, "--workers", "2", "--no-worker").start()
    ids = [f"w2-{i}" for i in range(10)]
    for request_id in ids:
        # A new connection each time, so the kernel may spread them over both workers.
        with httpx.Client() as http:
            response = http.get(
                server.base_url + "/api/tasks", headers={"X-Request-ID": request_id}
            )
            assert response.status_code == 200
    server.terminate()
    logged = [r["request_id"] for r in server.log_records() if r.get("logger") == "orc.access"]
    assert sorted(logged) == sorted(ids)


def test_secrets_in_a_path_or_request_id_never_reach_the_access_line(
    server_factory, migrated, sqlite_env
):
    """Access lines are formatted without a LogRecord; they are redacted all the same: the
    configured token and a personal access token sent by a client are not written."""
    token = "srv-" + secrets.token_urlsafe(24)
    pat = "orc_pat_" + secrets.token_urlsafe(18)
    env = dict(sqlite_env, ORC_LOG_LEVEL="info", ORC_AUTH_TOKEN=token)
    server = server_factory(env).start()
    sent = {"plain-id-1": "/api/tasks", pat: f"/api/tasks/{token}"}
    for request_id, path in sent.items():
        server.get(path, headers={"X-Request-ID": request_id, "Authorization": f"Bearer {token}"})
    server.terminate()
    output = server.logs()
    assert token not in output and pat.removeprefix("orc_pat_") not in output
    access = [r for r in server.log_records() if r.get("logger") == "orc.access"]
    assert [r["request_id"] for r in access] == ["plain-id-1", "orc_pat_[redacted]"]
    assert [r["path"] for r in access] == ["/api/tasks", "/api/tasks/[redacted]"]
    assert access[0]["message"] == "GET /api/tasks 200"
