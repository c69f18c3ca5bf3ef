"""The ``orc`` command line: the root group and the entry point.

Each command group lives in its own module and parses arguments, then calls library functions;
heavy imports happen inside the commands, so ``orc serve``'s long-lived launcher stays small.
"""

from __future__ import annotations

import sys

import click

from orc import __version__
from orc.cli import (
    auth_commands,
    backup_commands,
    config_commands,
    project_commands,
    replication_commands,
    run_commands,
    serve_commands,
    task_commands,
)
from orc.cli.console import SettingsProvider, fail, report
from orc.errors import OrcError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="orc")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """orc: orchestrate AI coding tasks."""
    # Read once, when a command first asks (console.settings_from, console.pass_settings).
    ctx.ensure_object(SettingsProvider)


for _module in (
    serve_commands,
    config_commands,
    task_commands,
    project_commands,
    run_commands,
    auth_commands,
    backup_commands,
    replication_commands,
):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    """Entry point of the ``orc`` console script."""
    try:
        code = cli.main(prog_name="orc", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        fail(exc.format_message() + hint)
    except click.ClickException as exc:
        fail(exc.format_message())
    except click.Abort:
        fail("aborted", code=130)
    except OrcError as exc:
        sys.exit(report(exc))
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
