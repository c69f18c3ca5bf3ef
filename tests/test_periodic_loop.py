"""The job worker's own periodic chores (the usage fold, the heap trim) survive a failed round
and never hold up the worker's shutdown."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

# A worker process with two chores on its job runtime, every 0.05 s:
# - "flaky" fails its first round, then counts its rounds;
# - "stuck" never ends its round, whatever the stopping event says;
# - "away" finds the database away (a closed port), once.
# Printed: the rounds "flaky" did after its failure, and how long each stop() took.
SCRIPT = textwrap.dedent(
    """
    import asyncio, json, logging, sys, time
    from orc.config import load_settings
    from workers.job_runtime import PeriodicLoop, close_runtime, start_runtime

    logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(message)s")
    start_runtime(load_settings({"ORC_HOME": sys.argv[1]}))
    rounds = []

    async def flaky(stopping):
        rounds.append(time.monotonic())
        if len(rounds) == 1:
            raise RuntimeError("the first round fails")

    async def stuck(stopping):
        await asyncio.sleep(3600)

    away_rounds = []

    async def away(stopping):
        away_rounds.append(1)
        if len(away_rounds) == 1:
            raise ConnectionError("the port is closed")

    flaky_loop = PeriodicLoop("flaky chore", flaky, every=0.05)
    stuck_loop = PeriodicLoop("stuck chore", stuck, every=0.05, stop_timeout=0.5)
    away_loop = PeriodicLoop("away chore", away, every=0.05)
    deadline = time.monotonic() + 10
    while (len(rounds) < 4 or len(away_rounds) < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    flaky_loop.stop()
    flaky_stop = time.monotonic() - started
    started = time.monotonic()
    stuck_loop.stop()
    stuck_stop = time.monotonic() - started
    away_loop.stop()
    close_runtime()
    print(json.dumps({"after_failure": len(rounds) - 1, "flaky_stop": flaky_stop,
                      "stuck_stop": stuck_stop, "stuck_cancelled": stuck_loop.future.cancelled()}))
    """
)


def test_a_chore_goes_on_after_a_failed_round_and_a_stuck_one_does_not_hold_up_shutdown(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["after_failure"] >= 3, result
    assert "WARNING the flaky chore failed" in done.stderr
    assert "RuntimeError: the first round fails" in done.stderr
    # A database that is away is one line, not a traceback, as everywhere in the worker.
    assert "WARNING the away chore failed: ConnectionError: the port is closed" in done.stderr
    assert done.stderr.count("Traceback") == 1, done.stderr
    # A chore between rounds stops without waiting out its stop_timeout (5 s); a stuck one is
    # cancelled after its own (0.5 s).
    assert result["flaky_stop"] < 2.5, result
    assert 0.5 <= result["stuck_stop"] < 5, result
    assert result["stuck_cancelled"], result
    assert "WARNING the stuck chore did not end in 0.5 s: cancelled" in done.stderr
