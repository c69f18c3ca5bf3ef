"""Projects: orc project list|add|remove."""

from __future__ import annotations

import json
from pathlib import Path

import click

from orc.cli.console import pass_database_settings, run_on_database
from orc.config import Settings


@click.group()
def project() -> None:
    """The git repositories tasks work on."""


@project.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_database_settings
def project_list(settings: Settings, as_json: bool) -> None:
    """Registered projects."""
    from orc.projects.registry import list_projects

    projects = run_on_database(settings, list_projects)
    if as_json:
        click.echo(json.dumps([p.to_json() for p in projects], indent=2))
        return
    if not projects:
        click.echo("no projects; run `orc init` in a git repository or `orc project add PATH`")
    for item in projects:
        click.echo(f"{item.name}\t{item.path}")


@project.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", help="Name of the project (default: the repository's folder name).")
@pass_database_settings
def project_add(settings: Settings, path: Path, name: str | None) -> None:
    """Register the git repository at PATH."""
    from orc.projects.registry import add_project

    item, created = run_on_database(settings, lambda: add_project(path, name))
    click.echo(f"{'added' if created else 'already registered:'} {item.name} ({item.path})")


@project.command("remove")
@click.argument("name")
@pass_database_settings
def project_remove(settings: Settings, name: str) -> None:
    """Forget a project (its repository, branches and tasks stay)."""
    from orc.projects.registry import remove_project

    item = run_on_database(settings, lambda: remove_project(name))
    click.echo(f"removed {item.name}")


COMMANDS = (project,)
