"""Running orc: orc serve, orc worker, orc migrate, orc healthcheck (and the internal _api)."""

from __future__ import annotations

import json
import logging
import os
import sys

import click

from orc.cli.console import (
    WholeNumber,
    fail,
    pass_database_settings,
    pass_settings,
    report,
    settings_from,
)
from orc.config import Settings
from orc.errors import OrcError


@click.command()
@click.option("--host", help="Listen address (ORC_HOST).")
@click.option("--port", type=WholeNumber(1, 65535), help="Listen port (ORC_PORT).")
@click.option("--workers", type=WholeNumber(min=1), help="API worker processes (ORC_WORKERS).")
@click.option("--no-worker", is_flag=True, help="Do not run the job worker (run `orc worker`).")
@click.option(
    "--no-migrate",
    is_flag=True,
    help="Do not apply migrations first (something else runs `orc migrate` once, e.g. the "
    "container's entry point).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    workers: int | None,
    no_worker: bool,
    no_migrate: bool,
) -> None:
    """Run the API (and the job worker) until SIGTERM or Ctrl-C."""
    from orc.config import parse_host
    from orc.runtime import launcher

    if host is not None:
        try:
            host = parse_host(host)
        except ValueError as exc:
            fail(f"--host {host!r} is invalid: {exc}")
    # Signals are handled from here on, so a SIGTERM during migrations still ends cleanly.
    stop = launcher.StopRequest()
    stop.install()
    settings = settings_from(ctx, host=host, port=port, workers=workers)
    # The API imports meanwhile (held before it touches anything): the checks and the
    # migrations overlap its imports, the longest part of start-up.
    held = launcher.hold_api(settings)
    try:
        _check_before_serving(settings, run_worker=not no_worker)
        _prepare_in_child(settings, migrate=not no_migrate)
    except BaseException:
        held.discard()
        raise
    if stop.event.is_set():
        held.discard()
        sys.exit(0)
    sys.exit(launcher.serve(settings, run_worker=not no_worker, stop=stop, held=held))


def _check_before_serving(settings: Settings, run_worker: bool) -> None:
    """Stop start-up in one line on a setting that cannot work; set up the launcher's log."""
    from orc.config.unused import unused_settings_warnings
    from orc.runs.agent_env import check_agent_policy
    from orc.runtime import launcher
    from orc.runtime.logs import setup_logging
    from orc.runtime.redact import secret_values
    from orc.usage.pricing import load_prices

    if run_worker:
        check_agent_policy(settings)
    load_prices(settings.home)  # a broken pricing.yaml stops start-up here, in one line
    setup_logging(settings.log_level, settings.log_format, secret_values(settings))
    for message in unused_settings_warnings(settings):
        logging.getLogger("orc.config").warning(message)
    launcher.check_port_free(settings.host, settings.port)


def _prepare_in_child(settings: Settings, migrate: bool) -> None:
    """Check the auth policy, migrate and prepare auth in a forked child, so the long-lived
    supervisor never loads the token-strength dictionaries (13 MiB), the ORM or the OIDC client
    (they would stay in its memory for the life of the server)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: migrate, report, exit without running the parent's cleanup
        code = 0
        try:
            from orc.auth.policy import check_auth_policy
            from orc.db.lean import import_orm_without_pydantic

            import_orm_without_pydantic()

            check_auth_policy(settings)
            if migrate:
                _migrate_or_exit(settings)
            if settings.auth_enabled:
                _prepare_auth(settings)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except OrcError as exc:
            code = report(exc)
        except BaseException:
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(code if code > 0 else 1)


def _migrate_or_exit(settings: Settings) -> None:
    import asyncio

    from orc.backup.premigrate import pre_migration_hook
    from orc.db import describe_error
    from orc.db.schema import migrate_database

    log = logging.getLogger("orc.migrate")
    try:
        applied = asyncio.run(
            migrate_database(
                settings.database,
                lambda name: log.info("applying %s", name),
                before_migrating=pre_migration_hook(settings, log.info),
            )
        )
    except OrcError:
        raise  # a failed migration or pre-migration backup says why itself
    except Exception as exc:
        fail(
            f"cannot open the database ({describe_error(exc)}); check DATABASE_URL "
            "and that the database server is running",
            code=1,
        )
    if applied:
        log.info("applied %d migration(s): %s", len(applied), ", ".join(applied))


def _prepare_auth(settings: Settings) -> None:
    """Make the session key once (before several API processes race for it) and check OIDC."""
    import asyncio

    from orc.auth.secret_key import load_secret_key

    load_secret_key(settings)
    if settings.auth_type != "oidc":
        return
    from orc.auth.oidc import OidcError, OidcProvider

    try:
        asyncio.run(OidcProvider(settings).discover())
    except OidcError as exc:
        if exc.code != "oidc_unreachable":
            fail(f"ORC_OIDC_ISSUER={settings.oidc_issuer}: {exc}")
        # The provider may be down for a moment; tokens keep working, sign-in retries.
        logging.getLogger("orc.auth").warning("%s; sign-in will retry it", exc)


@click.command("_api", hidden=True)
@pass_settings
def api_process(settings: Settings) -> None:
    """The API process that `orc serve` starts (internal)."""
    from orc.runtime.children import run_api_process

    run_api_process(settings)


@click.command()
@pass_settings
def worker(settings: Settings) -> None:
    """Run the job worker. SIGINT stops gracefully; SIGTERM stops at once."""
    from orc.runtime.children import run_worker_process

    run_worker_process(settings)


@click.command()
@click.option("--dry-run", is_flag=True, help="List pending migrations; change nothing.")
@click.option("--no-backup", is_flag=True, help="Skip the pre-migration backup.")
@pass_database_settings
def migrate(settings: Settings, dry_run: bool, no_backup: bool) -> None:
    """Apply pending database migrations (run once before starting servers).

    A database that holds data is backed up first (reason pre-migration).
    """
    import asyncio

    from orc.backup.premigrate import pre_migration_hook
    from orc.db import describe_error
    from orc.db.schema import migrate_database

    try:
        names = asyncio.run(
            migrate_database(
                settings.database,
                lambda name: click.echo(f"applying {name}"),
                dry_run=dry_run,
                before_migrating=None if no_backup else pre_migration_hook(settings, click.echo),
            )
        )
    except OrcError:
        raise  # a failed migration or pre-migration backup says why itself
    except Exception as exc:
        fail(f"cannot open the database ({describe_error(exc)}); check DATABASE_URL", code=1)
    if dry_run:
        click.echo("\n".join(f"pending {name}" for name in names) or "no pending migrations")
    else:
        click.echo(f"applied {len(names)} migration(s)" if names else "database is up to date")


@click.command()
@click.option("--timeout", default=3.0, show_default=True, help="Seconds to wait for an answer.")
@click.option("--ready", is_flag=True, help="Ask /api/health/ready instead and print its checks.")
@pass_settings
def healthcheck(settings: Settings, timeout: float, ready: bool) -> None:
    """Exit 0 when /api/health (or /api/health/ready) says ok on the configured port, else 1."""
    import urllib.error
    import urllib.request

    from orc.runtime.launcher import probe_address

    host = probe_address(settings.host)
    host = f"[{host}]" if ":" in host else host
    url = f"http://{host}:{settings.port}/api/health" + ("/ready" if ready else "")
    # Never through HTTP_PROXY: behind a corporate proxy the probe of our own loopback port
    # would go to the proxy, which cannot reach it, and the container would look unhealthy.
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with direct.open(url, timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        # Readiness answers 503 with its checks when degraded: show them.
        try:
            body = json.loads(exc.read())
        except ValueError:
            fail(f"{url} answered HTTP {exc.code}", code=1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        fail(f"{url} did not answer: {getattr(exc, 'reason', exc)}", code=1)
    if ready:
        click.echo(json.dumps(body, indent=2))
    if body.get("status") != "ok":
        fail(f"{url} answered {body!r}", code=1)
    if not ready:
        click.echo(f"ok {url} version {body.get('version')}")


COMMANDS = (serve, api_process, worker, migrate, healthcheck)
