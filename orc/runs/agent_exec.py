"""``orc-agent-exec``: start Claude Code with only the environment orc chose, in its own group.

The SDK starts its CLI with the worker's whole environment merged under the options; this
launcher (the SDK's ``cli_path``) keeps only the variables named in ``ORC_AGENT_ENV_KEYS``,
so the agent never sees orc's tokens or ``DATABASE_URL``. It runs the CLI in a new session, so
the CLI and every tool it starts form one process group, and it stays as their parent: when
the worker closes the agent, stops it, or dies (even by SIGKILL, through PR_SET_PDEATHSIG),
every process below it is killed (it is their subreaper, so even tools that detached are
found), and no agent or tool process outlives its run. It leaves the worker's process group,
so that killing the group of ``orc serve`` ends it through the death signal, not silently; and
should it be SIGKILLed itself, the CLI gets SIGTERM and ends its own tools. Its own pid and
the CLI's are written to ``ORC_AGENT_PIDFILE``: orc stops an agent by signalling the launcher.
It starts for every agent turn, so it starts cheaply: ``agent-exec.sh`` runs this file with
``python -I -S`` (no site-packages, no ``.pth`` files), and it imports only ``ctypes``, ``os``,
``sys`` and ``_signal`` (the C module under ``signal``, without its enum classes). Leaving out
``contextlib`` and ``signal``'s enums took its CPU per turn from 27-31 to 18-21 ms (/bin/true as
the CLI, 3 x 50 interleaved starts).
"""

from __future__ import annotations

# ruff: noqa: SIM105 (try/except/pass, not contextlib.suppress: contextlib costs each turn 5 ms)
import _signal as signal  # signal's C module: importing signal builds enums (4 ms)
import ctypes
import os
import sys

ENV_KEYS = "ORC_AGENT_ENV_KEYS"
PYTHON = "ORC_AGENT_PYTHON"
CLI = "ORC_AGENT_CLI"
PIDFILE = "ORC_AGENT_PIDFILE"
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _prctl(option: int, value: int | bytes) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the pidfile still allows clean-up
        pass


def _cli_dies_with_us() -> None:
    """In the CLI's process, before it starts: should this launcher be SIGKILLed, the CLI gets
    SIGTERM (it then ends its own tools) instead of running on as an orphan."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stat_fields(pid: int | str) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (so index 0 is the state,
    1 the parent's pid, 19 the start time); None when the process is gone or there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            stat = stat_file.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields follow the last ")".
    return stat.rpartition(b")")[2].split()


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (from /proc), children first found first."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or (fields := stat_fields(name)) is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(name))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_tree(root: int) -> None:
    """SIGKILL everything below ``root``, whatever group or session it moved to.

    Claude Code starts each tool command in a process group of its own, so killing the CLI's
    group is not enough.
    """
    for _ in range(3):  # a process may fork while we look: look again
        pids = descendants(root)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _start(cli: str, args: list[str], env: dict[str, str]) -> int:
    """Fork and exec the CLI in a session of its own, set to die with us; its pid. By hand:
    importing ``subprocess`` cost this short-lived process 14 of its 45 ms of CPU."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            _cli_dies_with_us()
            os.execvpe(cli, [cli, *args], env)  # noqa: S606 (the CLI orc chose, no shell)
        except BaseException as exc:
            os.write(2, f"orc-agent-exec: cannot start {cli}: {exc}\n".encode())
        os._exit(127)
    return pid


def _reap() -> bool:
    """Reap the children that ended; whether any child (running) is left."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        return False
    return True


def main() -> None:
    """Run the CLI named by ORC_AGENT_CLI with the chosen environment; exit with its code."""
    cli = os.environ.get(CLI)
    if not cli:
        print("orc-agent-exec: ORC_AGENT_CLI is not set (orc runs this)", file=sys.stderr)
        sys.exit(2)
    keys = [key for key in os.environ.get(ENV_KEYS, "").split(",") if key]
    env = {key: os.environ[key] for key in keys if key in os.environ}
    pidfile = os.environ.get(PIDFILE)
    # Its name in ps and /proc/<pid>/comm, not "python": agent_exec.py runs as `python -I -S`.
    _prctl(PR_SET_NAME, b"orc-agent-exec")
    parent = os.getppid()
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the worker died before we asked to be told
        sys.exit(1)
    # Out of the worker's process group: a kill of that group (orc serve killed as a whole)
    # must leave us alive long enough to end the agent's tree when the death signal comes.
    try:
        os.setsid()
    except OSError:
        pass
    # Orphans of the agent's tools become our children, not init's: we can find and end them.
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    me = os.getpid()

    def stop(signum: int, _frame: object) -> None:
        kill_tree(me)
        _reap()
        sys.exit(128 + signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    child = _start(cli, sys.argv[1:], env)
    if pidfile:  # whole or not at all: orc may read it at any moment to stop the agent
        partial = f"{pidfile}.tmp"
        with open(partial, "w") as out:
            out.write(f"{me} {child}")
        os.replace(partial, pidfile)
    code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    # The CLI is gone; tools it left behind (a background server, a hung test) go with it.
    # Each of them is now a child of ours (we are their subreaper) or below one: with no child
    # left there is nothing to kill, and no need to read every process of the machine.
    if _reap():
        kill_tree(me)
        _reap()
    if pidfile:
        try:
            os.unlink(pidfile)
        except FileNotFoundError:
            pass
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
