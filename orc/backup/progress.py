"""How a long backup tells a person what it is doing: one line per step (the CLI draws a bar)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO


class Reporter:
    """Plain lines, one per step (cron, `docker exec` without -t, logs)."""

    def __init__(self, stream: IO[str] | None = None, prefix: str = "backup") -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.prefix = prefix

    def step(self, text: str, total: int | None = None) -> Callable[[int], object]:
        """Start a step; returns a callback that takes the bytes done so far."""
        size = f" ({human_size(total)})" if total else ""
        print(f"{self.prefix}: {text}{size}", file=self.stream, flush=True)
        return lambda done: None

    def close(self) -> None:
        """Finish the display."""


class QuietReporter(Reporter):
    """Says nothing (jobs log their outcome instead)."""

    def step(self, text: str, total: int | None = None) -> Callable[[int], object]:
        return lambda done: None


def human_size(size: int | float) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
