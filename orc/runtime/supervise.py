"""supervisord in the container: stop it when a program goes FATAL, and say so in the exit code.

supervisord keeps running after a program gives up restarting (FATAL), so a container whose API
or worker is dead would look alive. ``orc-fatal-listener`` is a supervisord event listener that
asks supervisord to stop (SIGTERM: every other program stops gracefully) when that happens.
supervisord then exits 0 as after any SIGTERM; ``orc-supervisord`` runs supervisord in its own
process and exits 1 instead when the listener recorded a FATAL program, so the container's exit
code (and ``restart: on-failure``) tells a crash from a stop.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import TextIO

# Set by orc-supervisord for its children: where the listener records the FATAL program.
FATAL_FILE_ENV = "ORC_SUPERVISOR_FATAL_FILE"
EXIT_PROGRAM_FATAL = 1


def parse_tokens(line: str) -> dict[str, str]:
    """``key:value key:value`` (an event header, or the first line of a payload) as a dict."""
    return dict(token.split(":", 1) for token in line.split() if ":" in token)


def handle_events(
    stdin: TextIO, stdout: TextIO, stderr: TextIO, supervisord_pid: int, fatal_file: Path | None
) -> None:
    """The event listener protocol: READY, read one event, act, RESULT; until stdin closes."""
    while True:
        stdout.write("READY\n")
        stdout.flush()
        header_line = stdin.readline()
        if not header_line:
            return
        header = parse_tokens(header_line)
        payload = stdin.read(int(header.get("len", "0")))
        if header.get("eventname") == "PROCESS_STATE_FATAL":
            fields = parse_tokens(payload.split("\n", 1)[0])
            name = fields.get("processname", "?")
            stderr.write(
                f"orc-fatal-listener: program {name} went FATAL (it kept exiting); "
                "stopping supervisord so the container stops\n"
            )
            stderr.flush()
            if fatal_file is not None:
                fatal_file.write_text(name + "\n", encoding="utf-8")
            os.kill(supervisord_pid, signal.SIGTERM)
        stdout.write("RESULT 2\nOK")
        stdout.flush()


def fatal_listener() -> None:
    """Entry point of ``orc-fatal-listener`` (run by supervisord, which is its parent)."""
    fatal_file = os.environ.get(FATAL_FILE_ENV)
    handle_events(
        sys.stdin,
        sys.stdout,
        sys.stderr,
        os.getppid(),
        Path(fatal_file) if fatal_file else None,
    )


def run_supervisord(argv: list[str] | None = None) -> int:
    """Run supervisord in this process; 1 when it stopped because a program went FATAL."""
    from supervisor import supervisord

    with tempfile.TemporaryDirectory(prefix="orc-supervisord-") as state:
        fatal_file = Path(state) / "fatal"
        os.environ[FATAL_FILE_ENV] = str(fatal_file)
        supervisord.main(sys.argv[1:] if argv is None else argv)
        if fatal_file.exists():
            name = fatal_file.read_text(encoding="utf-8").strip()
            print(f"orc-supervisord: stopped because program {name} went FATAL", file=sys.stderr)
            return EXIT_PROGRAM_FATAL
    return 0


def main() -> None:
    """Entry point of ``orc-supervisord``: supervisord's own options, e.g. ``-c FILE``."""
    sys.exit(run_supervisord())
