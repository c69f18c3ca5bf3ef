"""Plain-SQL PostgreSQL dumps (``.sql``, ``.sql.gz``) made outside orc: the team compose's backup
service (``pg_dump -Z1 --schema=public``) and the spec's ``pg_dump | gzip``.

``orc backup restore FILE`` replays one like its own dumps: refused while a server uses the
database, a safety backup first, then every table dropped and the dump run in one transaction.
"""

from __future__ import annotations

import asyncio
import gzip
import os
from pathlib import Path

from orc.backup import postgres
from orc.backup.create import take_backup_locked
from orc.backup.exclusive import backup_lock
from orc.backup.manifest import BackupError, Manifest
from orc.backup.progress import Reporter
from orc.backup.restore import check_not_in_use
from orc.config import Settings

PLAIN_SUFFIXES = (".sql.gz", ".sql")
HEADER = "-- PostgreSQL database dump"
FOOTER = "-- PostgreSQL database dump complete"
HEADER_LINES = 5
# A dump of one schema creates it; the restore keeps the schema (and drops its tables) instead.
CREATE_PUBLIC = "CREATE SCHEMA public;"


def is_plain_dump(name: str) -> bool:
    """Whether ``name`` names a plain-SQL dump file rather than one of orc's backups."""
    return name.endswith(PLAIN_SUFFIXES)


def stage_plain_dump(source: Path, script: Path) -> None:
    """Write ``source`` (decompressed) to ``script``, checking it is a whole pg_dump SQL dump."""
    opener = gzip.open if source.name.endswith(".gz") else open
    header = complete = False
    try:
        with (
            opener(source, "rt", encoding="utf-8") as lines,  # type: ignore[operator]
            script.open("w", encoding="utf-8") as out,
        ):
            for number, line in enumerate(lines):
                if number < HEADER_LINES and line.startswith(HEADER):
                    header = True
                if line.rstrip("\n") == CREATE_PUBLIC:
                    line = "CREATE SCHEMA IF NOT EXISTS public;\n"
                # Only comments and psql's \unrestrict follow the footer.
                complete = complete or line.startswith(FOOTER)
                out.write(line)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise BackupError(f"{source.name} cannot be read as a plain-SQL dump ({exc})") from None
    if not header:
        raise BackupError(
            f"{source.name} is not a pg_dump plain-SQL dump (no '{HEADER}' line at its start)"
        )
    if not complete:
        raise BackupError(
            f"{source.name} is incomplete: it does not end with pg_dump's '{FOOTER}' line"
        )


async def restore_plain_dump(
    settings: Settings, source: Path, force: bool, reporter: Reporter
) -> Manifest:
    """Restore the dump at ``source``; return the safety backup taken first."""
    if settings.database.is_sqlite:
        raise BackupError(f"{source.name} is a PostgreSQL dump; DATABASE_URL is SQLite")
    settings.backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    script = settings.backup_dir / f".restore-{os.getpid()}.sql"
    async with backup_lock(settings.backup_dir, settings.database_url):
        if not force:
            await check_not_in_use(settings.database_url)
        try:
            reporter.step(f"reading {source.name}", source.stat().st_size)
            await asyncio.to_thread(stage_plain_dump, source, script)
            reporter.step("taking a safety backup of the current database")
            safety = await take_backup_locked(settings, "pre-restore")
            reporter.step("restoring with psql (one transaction)")
            await asyncio.to_thread(postgres.run_restore_script, settings.database_url, script)
        finally:
            script.unlink(missing_ok=True)
    return safety
