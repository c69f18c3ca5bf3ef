"""Backups: orc backup now|list|verify|restore|prune."""

from __future__ import annotations

import json
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import click

from orc.cli.console import pass_database_settings, pass_settings
from orc.config import Settings

EXIT_FAILED = 1
EXIT_USAGE = 2


T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    # asyncio is imported here: `orc serve`'s launcher imports every command module and would
    # keep asyncio (and ssl) in memory for the life of the server (~6 MiB).
    import asyncio

    return asyncio.run(coro)


def _fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"orc: error: {message}", err=True)
    sys.exit(code)


def _kind(settings: Settings) -> str:
    return "sqlite" if settings.database.is_sqlite else "postgres"


@click.group()
def backup() -> None:
    """Take, list, verify, restore and prune backups of orc's database."""


@backup.command("now")
@click.option("--quiet", "-q", is_flag=True, help="Print only the backup's name.")
@pass_database_settings
def backup_now(settings: Settings, quiet: bool) -> None:
    """Take a backup now (online: the server keeps serving and writing)."""
    from orc.backup.manifest import BackupError
    from orc.backup.progress import QuietReporter, human_size
    from orc.backup.service import backup_opening_database
    from orc.cli.progress_bar import reporter_for

    reporter = QuietReporter() if quiet else reporter_for(sys.stderr)
    try:
        manifest = _run(backup_opening_database(settings, "manual", reporter))
    except BackupError as exc:
        reporter.close()
        _fail(str(exc))
    reporter.close()
    if quiet:
        click.echo(manifest.name)
        return
    click.echo(
        f"backup {manifest.name}: {human_size(manifest.size)}, integrity ok, "
        f"sha256 {manifest.sha256[:16]}…, {manifest.duration_seconds:.1f}s "
        f"in {settings.backup_dir}"
    )


def _verified(manifest: Any) -> str:
    if manifest.verified_ok is None:
        return "-"
    mark = "yes" if manifest.verified_ok else "FAILED"
    return f"{mark} {(manifest.verified_at or '')[:16].replace('T', ' ')}"


@backup.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the manifests).")
@pass_settings
def backup_list(settings: Settings, as_json: bool) -> None:
    """List backups, oldest first, with time, size, kind, verified and reason."""
    from orc.backup.manifest import list_backups
    from orc.backup.progress import human_size

    backups = list_backups(settings.backup_dir)
    if as_json:
        click.echo(json.dumps([m.to_json() for m in backups], indent=2))
        return
    if not backups:
        click.echo(f"no backups in {settings.backup_dir}")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "time (UTC)", "size", "kind", "verified", "reason", "schema", box=None)
    for m in backups:
        table.add_row(
            m.name,
            m.started_at[:19].replace("T", " "),
            human_size(m.size),
            m.kind + (" (gzip)" if m.gzip else ""),
            _verified(m),
            m.reason,
            m.schema_version or "-",
        )
    Console(width=200).print(table)


@backup.command("verify")
@click.argument("name", required=False)
@click.option("--all", "verify_all", is_flag=True, help="Verify every backup.")
@pass_settings
def backup_verify(settings: Settings, name: str | None, verify_all: bool) -> None:
    """Check a backup's checksum, integrity and that it restores (default: the latest)."""
    from orc.backup.manifest import BackupError, find_backup, list_backups
    from orc.backup.verify import verify_backup

    if name and verify_all:
        raise click.UsageError("give a NAME or --all, not both")
    try:
        targets = (
            list_backups(settings.backup_dir)
            if verify_all
            else [find_backup(settings.backup_dir, name or "latest", _kind(settings))]
        )
    except BackupError as exc:
        _fail(str(exc), EXIT_USAGE)

    async def verify_each() -> list[str]:
        failed = []
        for manifest in targets:
            problem = await verify_backup(settings.backup_dir, manifest)
            if problem is None:
                click.echo(f"ok {manifest.name}")
            else:
                failed.append(manifest.name)
                click.echo(f"FAILED {problem}")
        return failed

    failed = _run(verify_each())
    if failed:
        _fail(f"{len(failed)} of {len(targets)} backup(s) failed verification: {', '.join(failed)}")


@backup.command("restore")
@click.argument("name")
@click.option("--force", is_flag=True, help="Restore even though a server uses the database.")
@pass_settings
def backup_restore(settings: Settings, name: str, force: bool) -> None:
    """Restore the backup NAME (or `latest`); takes a safety backup of the current database.

    NAME may also be the path of a PostgreSQL plain-SQL dump (.sql or .sql.gz, e.g. from the
    team compose's backup service).
    """
    from orc.backup.manifest import BackupError, find_backup
    from orc.backup.plain_dump import is_plain_dump
    from orc.backup.restore import restore_backup
    from orc.cli.progress_bar import reporter_for

    if is_plain_dump(name):
        _restore_plain_dump(settings, name, force)
        return
    try:
        manifest = find_backup(settings.backup_dir, name, _kind(settings))
    except BackupError as exc:
        _fail(str(exc), EXIT_USAGE)
    reporter = reporter_for(sys.stderr, "restore")
    try:
        safety = _run(restore_backup(settings, manifest, force=force, reporter=reporter))
    except BackupError as exc:
        reporter.close()
        _fail(f"restore refused: {exc}" if "newer orc" in str(exc) else str(exc))
    reporter.close()
    if safety is not None:
        click.echo(f"safety backup of the previous database: {safety.name}")
    click.echo(f"restored {manifest.name}; start orc again (orc serve) to use it")


def _restore_plain_dump(settings: Settings, name: str, force: bool) -> None:
    from pathlib import Path

    from orc.backup.manifest import BackupError
    from orc.backup.plain_dump import restore_plain_dump
    from orc.cli.progress_bar import reporter_for

    source = Path(name)
    if not source.is_file():
        _fail(f"{name} is not a file; give the path of a .sql or .sql.gz dump", EXIT_USAGE)
    reporter = reporter_for(sys.stderr, "restore")
    try:
        safety = _run(restore_plain_dump(settings, source, force, reporter))
    except BackupError as exc:
        reporter.close()
        _fail(str(exc))
    reporter.close()
    click.echo(f"safety backup of the previous database: {safety.name}")
    click.echo(f"restored {source.name}; start orc again (orc serve) to use it")


@backup.command("prune")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@pass_settings
def backup_prune(settings: Settings, dry_run: bool) -> None:
    """Delete backups beyond ORC_BACKUP_KEEP_DAILY/WEEKLY/MONTHLY (and the pre-* caps)."""
    from orc.backup.manifest import BackupError, list_backups
    from orc.backup.retention import backups_to_keep
    from orc.backup.service import policy_of, prune_locked_or_not

    if dry_run:
        backups = list_backups(settings.backup_dir)
        keep = backups_to_keep(
            [(m.name, m.reason, m.started) for m in backups], policy_of(settings)
        )
        for m in backups:
            click.echo(f"{'keep  ' if m.name in keep else 'delete'} {m.name}")
        return
    try:
        removed = _run(prune_locked_or_not(settings, locked=False))
    except BackupError as exc:
        _fail(str(exc))
    for m in removed:
        click.echo(f"deleted {m.name}")
    click.echo(f"pruned {len(removed)} backup(s)")


COMMANDS = (backup,)
