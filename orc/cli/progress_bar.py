"""A rich progress bar for backups and restores run at an interactive terminal."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from orc.backup.progress import Reporter


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
