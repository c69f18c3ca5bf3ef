"""A filling disk: readiness warns below ORC_DISK_WARN_MB and fails (503) below
ORC_DISK_CRITICAL_MB. ORC_HOME (with orc.db and queue.db) lives on a small tmpfs that the test
really fills."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.in_process import LiveApp
from tests.support import base_env, small_tmpfs

MIB = 1024 * 1024


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 32 MiB tmpfs, or a skip that says why there is none."""
    with small_tmpfs(tmp_path / "volume", 32) as mount:
        yield mount


def _fill_until_free(volume: Path, free_mib: float) -> None:
    """Grow one file until the volume has about ``free_mib`` MiB left."""
    filler = volume / "filler"
    free = shutil.disk_usage(volume).free
    current = filler.stat().st_size if filler.exists() else 0
    size = current + free - int(free_mib * MIB)
    with filler.open("ab") as out:
        out.truncate(max(size, 0))
    # tmpfs allocates on write, not on truncate: write the bytes.
    with filler.open("r+b") as out:
        out.seek(current)
        remaining = max(size - current, 0)
        while remaining:
            chunk = min(remaining, MIB)
            out.write(b"\0" * chunk)
            remaining -= chunk


def test_readiness_warns_then_fails_as_the_disk_fills(
    tmp_path: Path, small_volume: Path, app_factory: Callable[..., LiveApp]
):
    env = base_env(tmp_path)
    env["ORC_HOME"] = str(small_volume / "home")
    app = app_factory(env, ORC_DISK_WARN_MB="12", ORC_DISK_CRITICAL_MB="6")

    ready = app.get("/api/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["disk"] == "ok"

    _fill_until_free(small_volume, 9)
    ready = app.get("/api/health/ready")
    assert ready.status_code == 200, ready.json()
    body = ready.json()
    assert body["status"] == "ok"
    assert body["checks"]["disk"].startswith("warning: ")
    assert "below ORC_DISK_WARN_MB=12" in body["checks"]["disk"]

    _fill_until_free(small_volume, 3)
    ready = app.get("/api/health/ready")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["checks"]["disk"].startswith("critical: ")
    assert "below ORC_DISK_CRITICAL_MB=6" in body["checks"]["disk"]
    assert body["checks"]["database"] == "ok"
    assert app.get("/api/health").status_code == 200  # alive, only not ready

    (small_volume / "filler").unlink()
    ready = app.get("/api/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["disk"] == "ok"


def test_the_default_critical_threshold_is_below_the_warning_one(tmp_path: Path):
    from orc.config import load_settings

    settings = load_settings(base_env(tmp_path), cwd=tmp_path)
    assert 0 < settings.disk_critical_mb < settings.disk_warn_mb
