"""The backup taken before migrations change a database that holds data (reason pre-migration)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from orc.backup.manifest import BackupError
from orc.backup.service import backup_and_record
from orc.config import Settings
from orc.errors import OrcError


class PreMigrationBackupFailed(OrcError):
    """The pre-migration backup failed, so no migration was applied."""

    code = "pre_migration_backup_failed"


def pre_migration_hook(
    settings: Settings, say: Callable[[str], object]
) -> Callable[[list[str]], Awaitable[None]]:
    """A ``before_migrating`` hook for ``migrate_database`` that takes the backup."""

    async def hook(pending: list[str]) -> None:
        say(f"backing up the database before applying {', '.join(pending)}")
        try:
            # The ORM is open on the migrating loop: the outcome is recorded there.
            manifest = await backup_and_record(settings, "pre-migration")
        except BackupError as exc:
            raise PreMigrationBackupFailed(
                f"the pre-migration backup failed, no migration was applied: {exc} "
                "(fix it, or run `orc migrate --no-backup` to migrate without a backup)"
            ) from None
        say(f"pre-migration backup {manifest.name}")

    return hook
