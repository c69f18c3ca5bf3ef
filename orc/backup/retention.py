"""Which backups to keep: the newest of each of the last N days, ISO weeks and months.

Scheduled and manual backups share that rule; pre-migration and pre-restore backups are kept
by count, each kind on its own, so upgrades cannot fill the disk. The newest backup is always
kept, whatever the settings say.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from orc.backup.files import remove_quietly
from orc.backup.manifest import (
    BACKUP_NAME,
    MANIFEST_SUFFIX,
    PREFIX,
    Manifest,
    list_backups,
    manifest_path,
)

CAPPED_REASONS = ("pre-migration", "pre-restore")


@dataclass(frozen=True)
class Policy:
    """Retention counts (from ORC_BACKUP_KEEP_*)."""

    daily: int
    weekly: int
    monthly: int
    capped: int


def _newest_per_period(
    stamps: Sequence[tuple[str, datetime]], count: int, period: Callable[[datetime], Hashable]
) -> set[str]:
    kept: set[str] = set()
    seen: list[Hashable] = []
    for name, when in sorted(stamps, key=lambda item: item[1], reverse=True):
        key = period(when)
        if key in seen:
            continue
        if len(seen) == count:
            break
        seen.append(key)
        kept.add(name)
    return kept


def backups_to_keep(backups: Sequence[tuple[str, str, datetime]], policy: Policy) -> set[str]:
    """Names to keep among (name, reason, started) triples."""
    rotated = [(n, t) for n, r, t in backups if r not in CAPPED_REASONS]
    keep = _newest_per_period(rotated, policy.daily, lambda t: t.date())
    keep |= _newest_per_period(rotated, policy.weekly, lambda t: t.isocalendar()[:2])
    keep |= _newest_per_period(rotated, policy.monthly, lambda t: (t.year, t.month))
    for reason in CAPPED_REASONS:
        mine = sorted((t, n) for n, r, t in backups if r == reason)
        keep |= {n for _, n in mine[-policy.capped :]}
    if backups:
        keep.add(max(backups, key=lambda b: b[2])[0])
    return keep


def prune_backups(backup_dir: Path, policy: Policy) -> list[Manifest]:
    """Delete backups the policy does not keep, and files of backups that never completed.

    Call only while holding the backup lock. Returns the deleted backups.
    """
    backups = list_backups(backup_dir)
    keep = backups_to_keep([(m.name, m.reason, m.started) for m in backups], policy)
    removed = []
    for manifest in backups:
        if manifest.name not in keep:
            # Manifest first: a crash in between leaves a file without one, pruned next time.
            remove_quietly(manifest_path(backup_dir, manifest.name))
            remove_quietly(backup_dir / manifest.name)
            removed.append(manifest)
    listed = {m.name for m in backups}
    for path in backup_dir.glob(PREFIX + "*"):
        if not path.is_file():
            continue
        if path.suffix == MANIFEST_SUFFIX:
            if not (backup_dir / path.name.removesuffix(MANIFEST_SUFFIX)).exists():
                remove_quietly(path)  # a manifest whose backup file is gone
        elif (
            path.name not in listed
            and BACKUP_NAME.match(path.name)
            and not manifest_path(backup_dir, path.name).exists()
        ):
            # A backup file whose manifest was never written (a crash before the rename of the
            # manifest). A file with a manifest we cannot read is left alone: never guess.
            remove_quietly(path)
    return removed
