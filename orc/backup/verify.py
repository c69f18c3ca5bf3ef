"""``verify_backup``: the checksum matches, the contents pass their check, the file restores."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from orc.backup import postgres, sqlite
from orc.backup.files import remove_quietly, sha256_file
from orc.backup.manifest import BackupError, Manifest, now_utc, write_manifest


def check_backup(backup_dir: Path, manifest: Manifest, contents: bool = True) -> None:
    """Raise BackupError naming the backup when it is not intact and restorable.

    ``contents=False`` checks size and checksum only (restore checks the restored copy itself).
    """
    path = backup_dir / manifest.name
    if not path.is_file():
        raise BackupError(f"{manifest.name}: the backup file is missing")
    size = path.stat().st_size
    if size != manifest.size:
        raise BackupError(
            f"{manifest.name}: size is {size} bytes, the manifest says {manifest.size}"
        )
    if sha256_file(path) != manifest.sha256:
        raise BackupError(f"{manifest.name}: checksum mismatch (the file was changed or damaged)")
    if not contents:
        return
    if manifest.kind == "postgres":
        try:
            postgres.check_dump(path)
        except BackupError as exc:
            raise BackupError(f"{manifest.name}: {exc}") from None
        return
    plain = path
    if manifest.gzip:
        # Not a TEMP_PREFIX name: a backup starting meanwhile removes those as stale.
        plain = backup_dir / f".verify-{manifest.name}-{os.getpid()}"
        sqlite.gunzip_file(path, plain)
    try:
        problem = sqlite.integrity_problem(plain)
    finally:
        if plain != path:
            remove_quietly(plain)
    if problem is not None:
        raise BackupError(f"{manifest.name}: integrity check failed: {problem}")


async def verify_backup(backup_dir: Path, manifest: Manifest) -> str | None:
    """Check one backup, record the result in its manifest; None when ok, else the reason."""
    return await asyncio.to_thread(_verify_and_record, backup_dir, manifest)


def _verify_and_record(backup_dir: Path, manifest: Manifest) -> str | None:
    try:
        check_backup(backup_dir, manifest)
        problem = None
    except BackupError as exc:
        problem = str(exc)
    manifest.verified_at = now_utc().isoformat()
    manifest.verified_ok = problem is None
    write_manifest(backup_dir, manifest)
    return problem
