"""What every command shares: the one-line failure style and the settings of this run.

A user error prints ``orc: error: …`` and exits 2 (bad usage or configuration); a failure at
run time exits 1. Nothing prints a traceback. Commands let an ``OrcError`` through: ``main``
reports it with the exit code it names.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from orc.config import Settings, load_settings
from orc.errors import EXIT_USAGE, OrcError


class WholeNumber(click.IntRange):
    """An integer option whose errors read "'abc' is not a valid whole number"."""

    name = "whole number"


def run_coroutine(coro: Any) -> Any:
    """asyncio.run, imported only by the commands that need it (the supervisor stays small)."""
    import asyncio

    return asyncio.run(coro)


def say_error(message: str) -> None:
    """The one line every failure prints."""
    click.echo(f"orc: error: {message}", err=True)


def report(error: OrcError) -> int:
    """Print an OrcError; the exit code it calls for."""
    say_error(error.message)
    return error.exit_code


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one error line and exit."""
    say_error(message)
    sys.exit(code)


def settings_from(ctx: click.Context, **overrides: Any) -> Settings:
    """The effective settings, with command-line values that were given applied on top."""
    settings = ctx.obj if isinstance(ctx.obj, Settings) else load_settings()
    changes = {key: value for key, value in overrides.items() if value is not None}
    return settings.replace(**changes) if changes else settings
