"""Litestream replication: orc replication status|restore."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from orc.cli.console import fail, pass_settings
from orc.config import Settings
from orc.errors import EXIT_FAILED, EXIT_USAGE


@click.group()
def replication() -> None:
    """Litestream replication of orc.db: status, and restore on boot."""


def _litestream_db(settings: Settings) -> Any:
    from orc.replication.litestream import load_litestream_db

    if not settings.database.is_sqlite:
        fail("Litestream replicates SQLite; DATABASE_URL is PostgreSQL", EXIT_USAGE)
    return load_litestream_db(settings.litestream_config, settings.database.sqlite_path)


@replication.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def replication_status(settings: Settings, as_json: bool) -> None:
    """Is Litestream running and how far is the replica behind (exit 1 when not ok)."""
    from orc.replication.litestream import check_replication

    db = _litestream_db(settings)
    status = check_replication(db)
    if as_json:
        click.echo(json.dumps(status.to_json(), indent=2))
    else:
        click.echo(f"replication: {status.status}")
        click.echo(f"database:    {db.path} (config {db.config})")
        click.echo(f"replicas:    {', '.join(status.replicas)}")
        click.echo(f"litestream:  {'running' if status.up else 'not running'}")
        click.echo(f"lag:         {status.lag_seconds:g}s")
        click.echo(f"local txid:  {status.local_txid or '-'}")
        click.echo(f"replica:     txid {status.replica_txid or '-'} at {status.replica_at or '-'}")
    if not status.ok:
        sys.exit(EXIT_FAILED)


@replication.command("restore")
@click.option(
    "--if-missing",
    is_flag=True,
    required=True,
    help="Only when the database file is missing (the only mode: never overwrites).",
)
@pass_settings
def replication_restore(settings: Settings, if_missing: bool) -> None:
    """Restore orc.db from its Litestream replica when the file is missing (container boot)."""
    from orc.replication.litestream import restore_if_missing

    if not settings.litestream_enabled:
        click.echo("replication is off (ORC_LITESTREAM_ENABLED is not true); nothing to restore")
        return
    if settings.database.is_sqlite and settings.database.sqlite_path.exists():
        click.echo(f"{settings.database.sqlite_path} exists; nothing to restore")
        return
    db = _litestream_db(settings)
    click.echo(restore_if_missing(db))


COMMANDS = (replication,)
