"""Where a run's wall time goes in orc, from the time stamps orc stores (SQLite, ORC_HOME/orc.db).

For each completed run of the given tasks: the run's claim, the phase's start, the prompt
entry (just before the agent starts), the agent's first and last messages, the phase's end
(after the commit) and the run's end. Printed as medians (and p90) over the runs, so a change
that takes time out of a run shows which stage it came from (bench/run_overhead.py).
"""

from __future__ import annotations

import contextlib
import sqlite3
import statistics
from datetime import datetime
from pathlib import Path

STAGES = (
    ("queued -> claimed (a round's first runs)", "queued", "claimed"),
    ("slot free -> claimed (dispatcher)", "slot_free", "claimed"),
    ("claimed -> phase started (worktree)", "claimed", "phase_started"),
    ("phase started -> prompt stored", "phase_started", "prompt"),
    ("prompt -> first agent message (CLI start, 1st call)", "prompt", "first_message"),
    ("first -> last agent message (the conversation)", "first_message", "result"),
    ("result -> phase finished (commit)", "result", "phase_finished"),
    ("phase finished -> run ended", "phase_finished", "ended"),
)


def _at(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def run_timelines(orc_db: Path, task_numbers: list[int], concurrency: int) -> list[dict]:
    """One dict of stage -> time stamp (seconds) per completed run of ``task_numbers`` (one
    round: queued together)."""
    marks = ",".join("?" * len(task_numbers))
    with contextlib.closing(sqlite3.connect(orc_db)) as db:
        runs = db.execute(
            "SELECT id, task_id, queued_at, started_at, ended_at FROM run "
            f"WHERE task_id IN ({marks}) AND status = 'completed' ORDER BY started_at",
            task_numbers,
        ).fetchall()
        timelines = []
        for run_id, task, queued, started, ended in runs:
            phase = db.execute(
                "SELECT started_at, finished_at FROM task_phase WHERE task_id = ? "
                "ORDER BY id DESC LIMIT 1",
                (task,),
            ).fetchone()
            entries = db.execute(
                "SELECT kind, created_at FROM transcript_entry WHERE run_id = ? ORDER BY id",
                (run_id,),
            ).fetchall()
            agent = [_at(at) for kind, at in entries if kind not in ("prompt", "note")]
            prompt = next(_at(at) for kind, at in entries if kind == "prompt")
            timelines.append(
                {
                    "queued_at": _at(queued),
                    "claimed": _at(started),
                    "phase_started": _at(phase[0]),
                    "prompt": prompt,
                    "first_message": agent[0],
                    "result": agent[-1],
                    "phase_finished": _at(phase[1]),
                    "ended": _at(ended),
                }
            )
    # Within a round (all queued at once), a run waits for a free slot: the one that freed it
    # ended ``concurrency`` runs earlier; the first ``concurrency`` runs wait for nothing.
    ends = sorted(t["ended"] for t in timelines)
    for index, timeline in enumerate(timelines):
        if index < concurrency:
            timeline["queued"] = timeline["queued_at"]
        else:
            timeline["slot_free"] = ends[index - concurrency]
    return timelines


def timeline_lines(timelines: list[dict]) -> list[str]:
    """Median and p90 of each stage, in ms."""
    lines = []
    for name, start, end in STAGES:
        values = sorted((t[end] - t[start]) * 1000 for t in timelines if start in t and end in t)
        if not values:
            continue
        p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
        lines.append(
            f"    {name:52s} median {statistics.median(values):7.1f} ms  p90 {p90:7.1f} ms"
        )
    return lines
