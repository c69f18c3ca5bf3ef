"""``orc-agent-exec``: start Claude Code with only the environment orc chose, in its own group.

The SDK starts its CLI with the worker's whole environment merged under the options; this
launcher (the SDK's ``cli_path``) keeps only the variables named in ``ORC_AGENT_ENV_KEYS``,
so the agent never sees orc's tokens or ``DATABASE_URL``. It runs the CLI in a new session, so
the CLI and every tool it starts form one process group, and it stays as their parent: when
the worker closes the agent, stops it, or dies (even by SIGKILL, through PR_SET_PDEATHSIG),
the whole group is killed, and no agent or tool process outlives its run. The group id is
written to ``ORC_AGENT_PIDFILE`` so a worker that takes over a dead worker's run can end what
is left.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

ENV_KEYS = "ORC_AGENT_ENV_KEYS"
CLI = "ORC_AGENT_CLI"
PIDFILE = "ORC_AGENT_PIDFILE"
PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the pidfile still allows clean-up
        pass


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def main() -> None:
    """Run the CLI named by ORC_AGENT_CLI with the chosen environment; exit with its code."""
    cli = os.environ.get(CLI)
    if not cli:
        print("orc-agent-exec: ORC_AGENT_CLI is not set (orc runs this)", file=sys.stderr)
        sys.exit(2)
    keys = [key for key in os.environ.get(ENV_KEYS, "").split(",") if key]
    env = {key: os.environ[key] for key in keys if key in os.environ}
    pidfile = os.environ.get(PIDFILE)
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the worker died before we asked to be told
        sys.exit(1)
    child = subprocess.Popen([cli, *sys.argv[1:]], env=env, start_new_session=True)
    if pidfile:
        Path(pidfile).write_text(str(child.pid))

    def stop(signum: int, _frame: object) -> None:
        kill_group(child.pid)
        sys.exit(128 + signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    code = child.wait()
    # The CLI is gone; tools it left behind (a background server, a hung test) go with it.
    kill_group(child.pid)
    if pidfile:
        Path(pidfile).unlink(missing_ok=True)
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
