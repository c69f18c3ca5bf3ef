"""The FATAL event listener speaks supervisord's protocol and stops supervisord only on FATAL."""

from __future__ import annotations

import io
import signal
import subprocess
from pathlib import Path

from orc.runtime.supervise import handle_events


def _event(name: str, payload: str) -> str:
    header = (
        f"ver:3.0 server:supervisor serial:1 pool:fatal poolserial:1 "
        f"eventname:{name} len:{len(payload)}\n"
    )
    return header + payload


def test_it_answers_every_event_and_signals_supervisord_only_for_fatal(tmp_path: Path):
    stand_in = subprocess.Popen(["sleep", "30"])  # plays supervisord, receives the SIGTERM
    try:
        running = _event(
            "PROCESS_STATE_RUNNING", "processname:api groupname:api from_state:STARTING pid:1"
        )
        fatal = _event(
            "PROCESS_STATE_FATAL", "processname:worker groupname:worker from_state:BACKOFF"
        )
        out, err = io.StringIO(), io.StringIO()
        fatal_file = tmp_path / "fatal"
        handle_events(io.StringIO(running + fatal), out, err, stand_in.pid, fatal_file)
        # READY before each event, a result after each, READY again, then stdin closed.
        assert out.getvalue() == "READY\nRESULT 2\nOKREADY\nRESULT 2\nOKREADY\n"
        assert fatal_file.read_text() == "worker\n"
        assert "program worker went FATAL" in err.getvalue()
        assert stand_in.wait(timeout=5) == -signal.SIGTERM
    finally:
        stand_in.kill()
        stand_in.wait()


def test_events_other_than_fatal_leave_supervisord_alone(tmp_path: Path):
    stand_in = subprocess.Popen(["sleep", "30"])
    try:
        exited = _event("PROCESS_STATE_EXITED", "processname:api groupname:api expected:0 pid:7")
        handle_events(io.StringIO(exited), io.StringIO(), io.StringIO(), stand_in.pid, None)
        assert stand_in.poll() is None
        assert not (tmp_path / "fatal").exists()
    finally:
        stand_in.kill()
        stand_in.wait()
