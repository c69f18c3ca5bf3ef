"""Backup manifests: one JSON file beside each backup; a backup without one is not a backup.

The manifest is written last, after the backup file is checked, fsynced and renamed, so a
crash at any moment leaves either a complete backup with its manifest or files that
``list`` ignores and ``prune`` removes.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orc.backup.files import write_durably
from orc.errors import OrcError

MANIFEST_SUFFIX = ".json"
PREFIX = "orc-"
TEMP_PREFIX = ".tmp-"
REASONS = ("scheduled", "manual", "pre-migration", "pre-restore")
KINDS = ("sqlite", "postgres")


class BackupError(OrcError):
    """A backup, verification or restore failed; the message is one line for users."""

    code = "backup_failed"


@dataclass
class Manifest:
    """What a backup holds and how to check it."""

    name: str
    kind: str
    reason: str
    size: int
    sha256: str
    gzip: bool
    schema_version: str | None
    migrations: list[str]
    orc_version: str
    started_at: str
    finished_at: str
    duration_seconds: float
    verified_at: str | None = None
    verified_ok: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def started(self) -> datetime:
        return datetime.fromisoformat(self.started_at)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# What backup_name makes; prune deletes a manifest-less file only when its name is one of these.
BACKUP_NAME = re.compile(r"^orc-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}Z-[a-z-]+\.(db|dump)(\.gz)?$")


def backup_name(kind: str, reason: str, started: datetime, gzip: bool) -> str:
    """A file name that sorts by time: ``orc-2026-11-27T03-00-00.123Z-scheduled.db``."""
    stamp = started.astimezone(UTC).strftime("%Y-%m-%dT%H-%M-%S")
    millis = started.microsecond // 1000
    suffix = ".db" if kind == "sqlite" else ".dump"
    return f"{PREFIX}{stamp}.{millis:03d}Z-{reason}{suffix}{'.gz' if gzip else ''}"


def manifest_path(backup_dir: Path, name: str) -> Path:
    return backup_dir / (name + MANIFEST_SUFFIX)


def write_manifest(backup_dir: Path, manifest: Manifest) -> None:
    """Write (or replace) a manifest atomically."""
    data = json.dumps(manifest.to_json(), indent=2, sort_keys=True).encode() + b"\n"
    write_durably(manifest_path(backup_dir, manifest.name), data)


def read_manifest(path: Path) -> Manifest | None:
    """The manifest at ``path``, or None when it is unreadable or not one of ours."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        # Fields added by a newer orc are ignored, so it never loses sight of those backups.
        known = {f.name for f in fields(Manifest)}
        manifest = Manifest(**{k: v for k, v in data.items() if k in known})
    except (OSError, ValueError, TypeError):
        return None
    if manifest.kind not in KINDS or manifest.name + MANIFEST_SUFFIX != path.name:
        return None
    return manifest


def list_backups(backup_dir: Path) -> list[Manifest]:
    """Every complete backup (manifest and file present), oldest first."""
    if not backup_dir.is_dir():
        return []
    found = []
    for path in backup_dir.glob(PREFIX + "*" + MANIFEST_SUFFIX):
        manifest = read_manifest(path)
        if manifest is not None and (backup_dir / manifest.name).is_file():
            found.append(manifest)
    return sorted(found, key=lambda m: (m.started_at, m.name))


def find_backup(backup_dir: Path, name: str, kind: str | None = None) -> Manifest:
    """The backup called ``name`` (manifest suffix optional), or ``latest`` of ``kind``."""
    backups = list_backups(backup_dir)
    if name == "latest" and kind is not None:
        backups = [m for m in backups if m.kind == kind]
    if not backups:
        what = f"{kind} backups" if kind and name == "latest" else "backups"
        raise BackupError(f"no {what} in {backup_dir}; take one with: orc backup now")
    if name == "latest":
        # A restore's own safety copy is not what "latest" means: restoring latest twice
        # would otherwise undo the first restore.
        usable = [m for m in backups if m.reason != "pre-restore"] or backups
        return usable[-1]
    name = name.removesuffix(MANIFEST_SUFFIX)
    name = os.path.basename(name)
    for manifest in backups:
        if manifest.name == name:
            return manifest
    raise BackupError(f"no backup named {name!r} in {backup_dir}; see: orc backup list")


def temp_path(backup_dir: Path, name: str) -> Path:
    """Where a backup is written before it is checked and renamed (never listed)."""
    return backup_dir / f"{TEMP_PREFIX}{name}-{os.getpid()}"


def now_utc() -> datetime:
    return datetime.now(UTC)
