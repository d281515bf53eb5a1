"""Shared pieces of the stage commands: the rich progress bar of per-case work and the local executor.

Every per-case stage reports ``progress(done, total)``; :func:`case_progress` turns that into one rich bar,
so the stage commands show the same bar and none re-implements it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from rccgrade.parallel import ParallelSettings


@contextmanager
def case_progress(
    label: str, console: Console, total: int | None = None, *, transient: bool = True
) -> Iterator[Callable[[int, int], None]]:
    """A progress bar for per-case work; yields the ``progress(done, total)`` callback stages accept.

    Args:
        label: Text before the bar (rich markup allowed).
        console: Console to draw on.
        total: Number of items when known in advance (the callback updates it anyway).
        transient: Remove the bar when done (keep it for long, standalone commands).
    """
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    ) as bar:
        task = bar.add_task(label, total=total)

        def update(done: int, total_now: int) -> None:
            bar.update(task, completed=done, total=total_now)

        yield update


def local_parallel(workers: int) -> ParallelSettings:
    """Executor settings for ``--workers N``: serial for 1, local processes otherwise (0 = all cores)."""
    return ParallelSettings(backend="serial" if workers == 1 else "processes", workers=workers)
