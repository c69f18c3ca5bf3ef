"""How a long backup tells a person what it is doing: a rich bar on a terminal, lines otherwise."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, Any


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


class BarReporter(Reporter):
    """A rich progress bar per step, for an interactive terminal."""

    def __init__(self, stream: IO[str] | None = None, prefix: str = "backup") -> None:
        super().__init__(stream, prefix)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress: Any = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeElapsedColumn(),
            console=Console(file=self.stream),
            transient=False,
        )
        self.progress.start()
        self.task: Any = None

    def step(self, text: str, total: int | None = None) -> Callable[[int], object]:
        if self.task is not None:
            self._finish()
        self.task = self.progress.add_task(text, total=total)
        task = self.task
        return lambda done: self.progress.update(task, completed=done)

    def _finish(self) -> None:
        total = self.progress.tasks[-1].total
        if total:
            self.progress.update(self.task, completed=total)

    def close(self) -> None:
        if self.task is not None:
            self._finish()
        self.progress.stop()


def reporter_for(stream: IO[str], prefix: str = "backup") -> Reporter:
    """A bar when ``stream`` is a terminal, plain lines otherwise."""
    return BarReporter(stream, prefix) if stream.isatty() else Reporter(stream, prefix)


def human_size(size: int | float) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
