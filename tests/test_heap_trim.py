"""The job worker gives memory its threads freed back to the system (glibc keeps it otherwise)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workers.heap_trim import release_free_heap

# A worker process: its trim loop every 0.2 s on the job runtime, and a thread that allocates
# 80 MB in 4 KB blocks and frees all but the last (which pins the top of its arena, so glibc
# cannot shrink it on its own). Printed: RssAnon in KiB after the thread's free, then the
# lowest seen within 10 s.
SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    from orc.config import load_settings
    from workers.heap_trim import start_heap_trims
    from workers.job_runtime import close_runtime, start_runtime

    def rss_anon():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])

    start_runtime(load_settings({"ORC_HOME": sys.argv[1]}))
    trims = start_heap_trims(every=0.2)
    kept = []

    def allocate_and_free():
        blocks = [bytes(4000) + bytes([i % 256]) for i in range(20000)]
        kept.append(blocks[-1])

    thread = threading.Thread(target=allocate_and_free)
    thread.start()
    thread.join()
    freed = lowest = rss_anon()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and lowest > freed - 50_000:
        time.sleep(0.1)
        lowest = min(lowest, rss_anon())
    trims.stop()
    close_runtime()
    print(freed, lowest)
    """
)


@pytest.mark.skipif(not release_free_heap(), reason="this libc has no malloc_trim (not glibc)")
def test_the_worker_returns_memory_a_thread_freed_within_its_trim_period(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    freed, lowest = map(int, done.stdout.split())
    # 80 MB freed by the thread: at least 50 MB of it back to the system.
    assert freed - lowest >= 50_000, (freed, lowest)
