"""A real `orc serve` on a free loopback port, on SQLite and on PostgreSQL."""

from __future__ import annotations

import subprocess
import time

import psutil
from prometheus_client.parser import text_string_to_metric_families

from orc import __version__
from tests.support import ORC, free_port


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_health_ready_and_metrics_count_requests(server_factory, orc_env):
    server = server_factory(orc_env).start()
    before = server.get("/api/metrics").text

    health = server.get("/api/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "version": __version__}

    ready = server.get("/api/health/ready")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] == "ok"
    assert body["version"] == __version__

    for _ in range(3):
        assert server.get("/api/health").status_code == 200
    assert server.get("/api/nowhere/TASK-123/does-not-exist").status_code == 404

    metrics = server.get("/api/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    ok = {"method": "GET", "path": "/api/health", "status": "200"}

    def delta(name: str, **labels: str) -> float:
        return _sample(text, name, **labels) - _sample(before, name, **labels)

    assert delta("orc_http_requests_total", **ok) == 4
    assert delta("orc_http_requests_total", path="/api/health/ready") == 1
    assert delta("orc_http_requests_total", path="/api/metrics", status="200") == 1
    # Unknown paths are counted under one label, never the raw path.
    assert delta("orc_http_requests_total", path="<unmatched>", status="404") == 1
    assert "TASK-123" not in text
    assert delta("orc_http_request_duration_seconds_count", path="/api/health") == 4
    assert _sample(text, "process_resident_memory_bytes") > 0


def test_every_request_is_logged_once_with_its_request_id(server_factory, migrated, sqlite_env):
    server = server_factory(dict(sqlite_env, ORC_ACCESS_LOG_PROBES="true")).start()
    given = server.get("/api/health", headers={"X-Request-ID": "trace-abc-123"})
    assert given.headers["x-request-id"] == "trace-abc-123"
    generated = server.get("/api/health/ready").headers["x-request-id"]
    assert generated

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        access = [r for r in server.log_records() if r.get("logger") == "orc.access"]
        if {"trace-abc-123", generated} <= {r["request_id"] for r in access}:
            break
        time.sleep(0.1)
    by_id = {r["request_id"]: r for r in access}
    assert by_id["trace-abc-123"]["status"] == 200
    assert by_id["trace-abc-123"]["route"] == "/api/health"
    assert by_id[generated]["path"] == "/api/health/ready"
    assert len([r for r in access if r["request_id"] == "trace-abc-123"]) == 1


def test_text_log_format_when_configured(server_factory, migrated, sqlite_env):
    sqlite_env["ORC_LOG_FORMAT"] = "text"
    sqlite_env["ORC_ACCESS_LOG_PROBES"] = "true"
    server = server_factory(sqlite_env).start()
    server.get("/api/health")
    time.sleep(0.3)
    lines = [line for line in server.logs().splitlines() if "orc.access" in line]
    assert lines, server.logs()
    assert not lines[0].startswith("{")
    assert "GET /api/health 200" in lines[0]
    assert "request_id=" in lines[0]


def _api_processes_of(orc_home: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if process.info["cmdline"][-1:] == ["_api"] and (
                process.environ().get("ORC_HOME") == orc_home
            ):
                found.append(process)
        except (psutil.Error, TypeError):
            continue
    return found


def test_a_failed_start_up_leaves_no_api_process(sqlite_env):
    """The API process starts before the auth check and the migrations (it imports meanwhile,
    held at its gate); when they fail, orc serve still exits 2 with one line, and the held API
    process is gone with it."""
    env = dict(sqlite_env, ORC_AUTH_TOKEN="too-short")
    done = subprocess.run(
        [*ORC, "serve", "--host", "127.0.0.1", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "ORC_AUTH_TOKEN" in done.stderr and "Traceback" not in done.stderr
    assert _api_processes_of(env["ORC_HOME"]) == []


def test_the_processes_orc_serve_starts_fail_on_a_bad_setting_in_one_line(sqlite_env):
    """`python -m orc worker` and `_api` (what the launcher runs) skip the command line but
    still say what is wrong as the CLI does: one `orc: error:` line, exit code 2."""
    for command in ("worker", "_api"):
        done = subprocess.run(
            [*ORC, command],
            env=dict(sqlite_env, ORC_PORT="not-a-port"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("orc: error: "), done.stderr
        assert "ORC_PORT" in done.stderr
        assert "Traceback" not in done.stderr
