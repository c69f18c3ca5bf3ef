"""Metrics are right with several API worker processes: every scrape sees every worker's counts."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.support import descendants

PATH = "/api/health/ready"


def _scraped_count(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "orc_http_requests_total" and sample.labels.get("path") == PATH
    )


def _count_in_file(db_file: Path) -> float:
    return sum(
        sample.value
        for metric in MultiProcessCollector.merge([str(db_file)], accumulate=True)
        for sample in metric.samples
        if sample.name == "orc_http_requests_total" and sample.labels.get("path") == PATH
    )


def _metrics_dir(server_pid: int) -> Path:
    for proc in descendants(server_pid):
        directory = proc.environ().get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            return Path(directory)
    raise AssertionError("no API process has PROMETHEUS_MULTIPROC_DIR")


@pytest.mark.slow
def test_counts_add_up_across_two_api_workers(server_factory, migrated, sqlite_env):
    server = server_factory(sqlite_env, "--workers", "2", "--no-worker").start()
    baseline = _scraped_count(server.get("/api/metrics").text)

    n = 80
    for _ in range(n):
        # A new connection each time, so the kernel spreads them over both workers.
        with httpx.Client() as client:
            assert client.get(server.base_url + PATH, timeout=10).status_code == 200

    per_worker = [_count_in_file(f) for f in _metrics_dir(server.pid).glob("counter_*.db")]
    assert len([c for c in per_worker if c > 0]) == 2, f"both workers must serve: {per_worker}"

    # Whichever worker answers the scrape, it reports the sum over both.
    scrapes = [_scraped_count(server.get("/api/metrics").text) - baseline for _ in range(6)]
    assert scrapes == [n] * 6
