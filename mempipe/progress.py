"""Progress bars on stderr (stdout belongs to the pipe); silent unless enabled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Progress:
    """One rich progress display shared by every stage of a run; no-op when disabled."""

    def __init__(self, enabled: bool = False):
        self._bars: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bars = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(),
                                      console=Console(stderr=True), transient=True,
                                      # rich would route our stdout through its console
                                      # (and highlight it); stdout belongs to the pipe.
                                      redirect_stdout=False, redirect_stderr=False)

    def __enter__(self) -> Progress:
        if self._bars is not None:
            self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bars is not None:
            self._bars.stop()

    def task(self, description: str, total: int | None) -> Task:
        return Task(self._bars, description, total)

    def counted(self, description: str) -> Counted:
        """For work that reports how far it is, `(done, total)`, rather than each step."""
        return Counted(self, description)


class Task:
    def __init__(self, bars: Any, description: str, total: int | None):
        self._bars = bars
        self._id = bars.add_task(description, total=total) if bars is not None else None

    def advance(self, steps: int = 1) -> None:
        if self._bars is not None:
            self._bars.advance(self._id, steps)

    def done(self) -> None:
        if self._bars is not None:
            self._bars.remove_task(self._id)


class Counted:
    """A task made on the first report and moved to each reported count; call `done()`
    when the work ends (nothing shows if it never reported)."""

    def __init__(self, progress: Progress, description: str):
        self._progress, self._description = progress, description
        self._task: Task | None = None
        self._count = 0

    def __call__(self, count: int, total: int) -> None:
        if self._task is None:
            self._task = self._progress.task(self._description, total)
        self._task.advance(count - self._count)
        self._count = count

    def done(self) -> None:
        if self._task is not None:
            self._task.done()


def staged(progress: Callable[[str, int, int], None] | None, stage: str
           ) -> Callable[..., None]:
    """A `(done, total, ...)` callback that reports to `progress` as `stage`: one progress
    for work done in stages."""
    return lambda done, total, *_: progress(stage, done, total) if progress else None
