"""The job worker waits for its git and agent processes without a thread for each."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orc.runs.child_watcher import pidfds_work

# The worker's runtime (its one event loop, in a thread, with the database open) starts
# processes as the runs do; printed: each one's exit status, then the threads asyncio started
# to wait for them (none expected), then whether a process started after the runtime closed,
# from a loop of its own, still gets its status (asyncio's default watcher is back).
SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, threading
    from workers.job_runtime import AsyncRuntime

    started = []
    original_start = threading.Thread.start

    def recording_start(self):
        started.append(self.name)
        original_start(self)

    threading.Thread.start = recording_start

    async def status(code):
        proc = await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}")
        return await proc.wait()

    async def several():
        return await asyncio.gather(*(status(code) for code in (0, 3, 7)))

    runtime = AsyncRuntime(sys.argv[1])
    runtime.start()
    codes = runtime.run(several(), timeout=30)
    waiters = [name for name in started if "waitpid" in name]
    runtime.close()
    print(codes, waiters, asyncio.run(status(5)))
    """
)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio chooses pidfds itself")
@pytest.mark.skipif(not pidfds_work(), reason="this kernel gives no pidfds (Linux < 5.3)")
def test_the_worker_loop_gets_exit_statuses_without_a_waiting_thread_per_process(
    tmp_path: Path,
) -> None:
    url = f"sqlite://{tmp_path / 'orc.db'}"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, url], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "[0, 3, 7] [] 5", done.stdout + done.stderr
