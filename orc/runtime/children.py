"""The processes ``orc serve`` starts, ``python -m orc _api`` and ``python -m orc worker``.

``orc/__main__.py`` runs them from here without the command line: click and every command
group's module would otherwise stay in each child's memory for the life of the server
(about 1 MiB each). ``orc worker`` and ``orc _api`` typed by hand run the same functions.
"""

from __future__ import annotations

import sys

from orc.config import Settings, load_settings
from orc.errors import OrcError

CHILD_COMMANDS = ("_api", "worker")


def run_api_process(settings: Settings) -> None:
    """Import the API, wait at the start gate, then serve until SIGTERM/SIGINT."""
    from orc.db.lean import import_orm

    import_orm()
    from orc.runtime.api_gate import wait_at_gate
    from orc.runtime.api_process import run_api
    from orc.runtime.logs import setup_logging
    from orc.runtime.redact import secret_values

    if not wait_at_gate():
        sys.exit(0)
    setup_logging(settings.log_level, settings.log_format, secret_values(settings))
    run_api(settings)


def run_worker_process(settings: Settings) -> None:
    """Run the job worker. SIGINT stops gracefully; SIGTERM stops at once."""
    import signal

    # Held (pending) until the consumer can act on them: see workers.consumer.run_consumer.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    from orc.db.lean import import_orm_without_pydantic

    import_orm_without_pydantic()
    from orc.runs.agent_env import check_agent_policy
    from orc.runtime.logs import setup_logging
    from orc.runtime.redact import secret_values
    from workers.consumer import run_consumer

    check_agent_policy(settings)
    setup_logging(settings.log_level, settings.log_format, secret_values(settings))
    run_consumer(settings)


def run_child(command: str) -> None:
    """``python -m orc <command>`` for one of CHILD_COMMANDS, failing as the CLI does:
    ``orc: error: …`` on stderr and the error's exit code."""
    run = run_api_process if command == "_api" else run_worker_process
    try:
        run(load_settings())
    except OrcError as exc:
        print(f"orc: error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0)
