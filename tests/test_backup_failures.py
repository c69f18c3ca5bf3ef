"""Backups that fail do so loudly and harmlessly: kill -9, corruption, full disk, no pg_dump."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backup_support import backup_dir, backups, fill, orc_ok, query, titles
from tests.support import run_orc, small_tmpfs


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".tmp-")]


# A backup in its own process that stops at a known point: once its copy is complete but before
# it is published ("saving"), it says so on stdout and waits for stdin, which the test never
# feeds. The test kills it there: no race with how fast the copy is.
HELD_BACKUP = """
import asyncio, sys
from orc.backup.create import take_backup
from orc.backup.progress import QuietReporter
from orc.config import load_settings

class HoldBeforePublishing(QuietReporter):
    def step(self, text, total=None):
        if text == "saving":
            print("held", flush=True)
            sys.stdin.read()
        return super().step(text, total)

asyncio.run(take_backup(load_settings(), "manual", HoldBeforePublishing()))
"""


@pytest.mark.slow
def test_kill_9_during_a_backup_leaves_no_partial_backup_and_older_ones_intact(
    migrated, orc_env, database_url
):
    orc_ok(["new", "before"], orc_env)
    first = orc_ok(["backup", "now", "-q"], orc_env).strip()
    fill(database_url, 20_000)
    folder = backup_dir(orc_env)
    proc = subprocess.Popen(
        [sys.executable, "-c", HELD_BACKUP],
        env=orc_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"held\n", "the backup ended before its publishing step"
    assert _temp_files(folder), "a held backup has its complete copy in a temp file"
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group, as a container's stop would
    proc.wait()

    assert [b["name"] for b in backups(orc_env)] == [first]
    assert "1 of" not in orc_ok(["backup", "verify", "--all"], orc_env)
    # The kernel released the lock; the next backup cleans up the dead one's temp file.
    second = orc_ok(["backup", "now", "-q"], orc_env).strip()
    assert [b["name"] for b in backups(orc_env)] == [first, second]
    assert not _temp_files(folder)


@pytest.mark.slow
def test_a_corrupted_backup_fails_verify_by_name_and_restore_refuses_it(
    migrated, orc_env, database_url
):
    orc_ok(["new", "original"], orc_env)
    good = orc_ok(["backup", "now", "-q"], orc_env).strip()
    orc_ok(["new", "second"], orc_env)
    bad = orc_ok(["backup", "now", "-q"], orc_env).strip()
    path = backup_dir(orc_env) / bad
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))

    result = run_orc(["backup", "verify", "--all"], orc_env)
    assert result.returncode == 1
    assert f"ok {good}" in result.stdout
    assert f"FAILED {bad}: checksum mismatch" in result.stdout
    assert result.stderr.strip() == (f"orc: error: 1 of 2 backup(s) failed verification: {bad}")
    listed = {b["name"]: b for b in backups(orc_env)}
    assert listed[bad]["verified_ok"] is False and listed[good]["verified_ok"] is True

    orc_ok(["new", "third"], orc_env)
    refused = run_orc(["backup", "restore", bad], orc_env)
    assert refused.returncode == 1 and "checksum mismatch" in refused.stderr
    assert titles(database_url) == ["original", "second", "third"]
    assert not [b for b in backups(orc_env) if b["reason"] == "pre-restore"]


def test_a_damaged_sqlite_backup_with_a_matching_checksum_fails_its_integrity_check(
    migrated, orc_env, database_url
):
    """A manifest rewritten to match damage (or damage before hashing) is still caught."""
    if not database_url.startswith("sqlite"):
        pytest.skip("pg dumps are checked by pg_restore --list (covered by the checksum test)")
    import hashlib
    import json

    orc_ok(["new", "x"], orc_env)
    fill(database_url, 5000)
    name = orc_ok(["backup", "now", "-q"], orc_env).strip()
    path = backup_dir(orc_env) / name
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(3 * page, len(data) - page, 7 * page):  # scribble over b-tree pages
        data[offset + 8 : offset + 40] = b"\xa5" * 32
    path.write_bytes(bytes(data))
    manifest_path = backup_dir(orc_env) / (name + ".json")
    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"] = hashlib.sha256(data).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    result = run_orc(["backup", "verify", name], orc_env)
    assert result.returncode == 1
    assert f"FAILED {name}: integrity check failed" in result.stdout


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, or a skip that says why there is none."""
    with small_tmpfs(tmp_path / "tiny", 2) as mount:
        yield mount


def test_a_full_disk_gives_a_clear_error_and_leaves_the_database_untouched(
    migrated, orc_env, database_url, tiny_disk
):
    orc_ok(["new", "precious"], orc_env)
    fill(database_url, 60_000)  # about 8 MiB of random text: cannot fit in 2 MiB
    before = query(database_url, "SELECT count(*) FROM usage_event")
    orc_env["ORC_BACKUP_DIR"] = str(tiny_disk)
    result = run_orc(["backup", "now"], orc_env)
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("orc: error: ")
    assert "no space left" in error.lower(), error
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tiny_disk.iterdir()) == [".backup.lock"]
    assert query(database_url, "SELECT count(*) FROM usage_event") == before
    assert titles(database_url) == ["precious"]
    if database_url.startswith("sqlite"):
        assert query(database_url, "PRAGMA integrity_check") == [("ok",)]
    metrics_failures = query(
        database_url, "SELECT value FROM server_state WHERE key = 'backup.failures_total'"
    )
    assert metrics_failures == [("1",)]


def _fake_tool(folder: Path, name: str, version_line: str) -> None:
    folder.mkdir(exist_ok=True)
    tool = folder / name
    tool.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    tool.chmod(0o755)


def test_missing_or_too_old_pg_dump_is_a_clear_error(postgres_database, tmp_path: Path):
    from tests.support import base_env

    env = base_env(tmp_path)
    env["DATABASE_URL"] = postgres_database
    orc_ok(["new", "x"], env)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env["PATH"] = str(empty)
    missing = run_orc(["backup", "now"], env)
    assert missing.returncode == 1
    assert "pg_dump is not installed or not on PATH" in missing.stderr
    _fake_tool(empty, "pg_dump", "pg_dump (PostgreSQL) 11.22")
    old = run_orc(["backup", "now"], env)
    assert old.returncode == 1
    assert "pg_dump 11 cannot dump a PostgreSQL 15 server" in old.stderr
    assert backups({**env, "PATH": os.environ["PATH"]}) == []
    assert shutil.which("pg_dump")  # the real one is still there for the other tests
