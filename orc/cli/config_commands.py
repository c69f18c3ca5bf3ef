"""Configuration: orc init (a project's config file) and orc config show."""

from __future__ import annotations

import json
from pathlib import Path

import click

from orc.cli.console import pass_database_settings, pass_settings, run_on_database
from orc.config import Settings


@click.command()
@pass_database_settings
def init(settings: Settings) -> None:
    """Create .orc/config.yaml here (never overwrites your edits); in a git repository, also
    register it as a project that tasks can run in."""
    from orc.config.project_file import init_project
    from orc.projects.registry import NotAGitRepository, add_project

    path, created = init_project(Path.cwd(), settings.home)
    if created:
        click.echo(f"created {path}")
    else:
        click.echo(f"{path} already exists; left unchanged")
    try:
        project, new = run_on_database(settings, lambda: add_project(Path.cwd()))
    except NotAGitRepository:
        click.echo("not a git repository: no project registered (tasks need one to run)")
    else:
        state = "registered project" if new else "project already registered:"
        click.echo(f"{state} {project.name} ({project.path})")
    click.echo("next: orc serve")


@click.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_settings
def config_show(settings: Settings, as_json: bool) -> None:
    """Print the effective settings, where each came from, secrets redacted."""
    from orc.config import SETTINGS

    rows = [
        (s.name, s.env, settings.display_value(s.name), settings.sources.get(s.name, "default"))
        for s in SETTINGS
    ]
    if as_json:
        payload = {
            name: {"env": env, "value": value, "source": source}
            for name, env, value, source in rows
        }
        click.echo(json.dumps(payload, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("setting", "variable", "value", "source", box=None)
    for row in rows:
        table.add_row(*row)
    Console(width=200).print(table)


COMMANDS = (init, config)
