"""Build progress for the person at the terminal: one bar per stage, with counts and ETA.

The orchestration layer reports what it does through the module functions
(:func:`stage`, :func:`set_total`, :func:`advance`); a display installed with
:func:`display` (the ``eqcat`` command line's) shows it. Without a display every call is a
no-op, so flows run from Python, a deployment or the tests print nothing extra.

Stages run one after another, so the calls refer to the stage opened last.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_lock = threading.Lock()
_display: Progress | None = None
_current: TaskID | None = None


def _columns() -> tuple:
    return (
        SpinnerColumn(finished_text="[green]✓"),
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[last]}", style="dim"),
    )


@contextlib.contextmanager
def display(console: Console | None = None) -> Iterator[Progress]:
    """Show the stages reported inside this block as rich progress bars on ``console``.

    On a terminal the bars update in place; otherwise (a log file, a pipe) the final state
    of every bar is printed once at the end.
    """
    global _display
    progress = Progress(*_columns(), console=console or Console(stderr=True), transient=False)
    with progress:
        with _lock:
            previous, _display = _display, progress
        try:
            yield progress
        finally:
            with _lock:
                _display = previous


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Report the stage ``name`` as running for the duration of the block.

    Its bar is indeterminate until :func:`set_total` gives the number of units; on exit it is
    shown complete (or ``failed`` when the block raised).
    """
    global _current
    with _lock:
        progress = _display
        if progress is None:
            task = None
        else:
            task = progress.add_task(name, total=None, unit="", last="")
        previous, _current = _current, task
    failed = True
    try:
        yield
        failed = False
    finally:
        with _lock:
            _current = previous
        if progress is not None and task is not None:
            done = progress.tasks[progress.task_ids.index(task)]
            total = done.total if done.total is not None else 1
            progress.update(
                task,
                total=total,
                completed=done.completed if failed else total,
                last="[red]failed" if failed else "",
            )
            progress.stop_task(task)


def set_total(total: int, unit: str = "") -> None:
    """The running stage has ``total`` units (e.g. station-days) named ``unit``."""
    with _lock:
        if _display is not None and _current is not None:
            _display.update(_current, total=total, completed=0, unit=unit)


def advance(label: str = "", n: int = 1) -> None:
    """``n`` units of the running stage are done; ``label`` names the last (e.g. station-day)."""
    with _lock:
        if _display is not None and _current is not None:
            _display.update(_current, advance=n, last=label)
