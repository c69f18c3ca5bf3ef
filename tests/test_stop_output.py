"""Stopping orc prints nothing but orc's own log lines, whenever the stop comes.

The job worker is the process that used to print a raw traceback (a KeyboardInterrupt, or
aiosqlite's "Event loop is closed") or hang when its stop signal arrived during its start-up.
It is started here exactly as `orc serve` starts it (``launcher.worker_child``) and stopped with
its stop signal at twenty moments spread over its start-up, from before Python has imported
anything to after the job consumer runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import base_env, run_orc

pytestmark = pytest.mark.timeout(120)
STOPS = 20
SPREAD_SECONDS = 2.0
EXIT_TIMEOUT = 20.0

# Starts the worker with the launcher's own code, stops it after DELAY, exits with its code.
STOP_SCRIPT = """
import os, sys, time
from orc.runtime.launcher import worker_child
child = worker_child(dict(os.environ))
child.start()
time.sleep(float(sys.argv[1]))
child.send(child.stop_signal)
sys.exit(child.process.wait())
"""


def _stop_once(env: dict[str, str], delay: float, log: Path) -> tuple[float, int | str, str]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", STOP_SCRIPT, str(delay)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        code: int | str = process.wait(EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        subprocess.run(["pkill", "-KILL", "-s", str(process.pid)], check=False)
        process.kill()
        process.wait()
        code = "still running"
    return delay, code, log.read_text(errors="replace")


def _foreign_lines(output: str) -> list[str]:
    """Lines that are not one of orc's JSON log records."""
    foreign = []
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            foreign.append(line)
            continue
        if not isinstance(record, dict) or not {"time", "level", "logger"} <= record.keys():
            foreign.append(line)
    return foreign


def test_the_worker_stops_quietly_whenever_its_stop_signal_comes(tmp_path: Path):
    env = base_env(tmp_path)
    env["ORC_LOG_FORMAT"] = "json"
    migrated = run_orc(["migrate"], env)
    assert migrated.returncode == 0, migrated.stderr
    delays = [SPREAD_SECONDS * i / (STOPS - 1) for i in range(STOPS)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(lambda d: _stop_once(env, d, tmp_path / f"stop-{d:.2f}.log"), delays)
        )
    failures = [
        f"stopped after {delay:.2f}s: exit {code}\n" + "\n".join(_foreign_lines(output))
        for delay, code, output in results
        if code != 0 or _foreign_lines(output)
    ]
    assert not failures, "\n\n".join(failures)
