"""The progress bar of long command-line work: on stderr, so stdout carries only the results."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress


def count_bar(*, transient: bool = False, enabled: bool = True) -> Progress:
    """A rich bar of a task's description, bar, done / total and elapsed time on stderr; ``transient`` erases it
    when done. ``enabled=False``, or a stderr that is no terminal (a log, a pipe), shows nothing: no frame, no final
    bar, no blank line where a transient bar was."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console, transient=transient, disable=not enabled or not console.is_terminal)
