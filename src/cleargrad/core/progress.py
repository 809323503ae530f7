"""Rich progress bars for long loops (the one home of the library's and the command
line's progress display), with a ``quiet`` switch."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from contextlib import nullcontext
from typing import Any, TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["NO_TASK", "progress_bar", "rich_progress", "track"]

#: the task id callers hold when :func:`progress_bar` gave no bar (``quiet``); never passed to a bar
NO_TASK = TaskID(-1)

T = TypeVar("T")


def rich_progress(*, info: bool = True, console: Any = None, disable: bool = False,
                  transient: bool = False) -> Progress:
    """A rich progress display: description, bar, ``done/total``, elapsed and remaining
    time; with ``info`` also a free text field (``task.fields["info"]``) after the count."""
    columns: list[Any] = [TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if info:
        columns.append(TextColumn("{task.fields[info]}"))
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=console, disable=disable, transient=transient)


def progress_bar(quiet: bool = False, transient: bool = False) -> Progress | nullcontext[None]:
    """A rich progress bar with an ``info`` text field, or a context yielding None when
    ``quiet`` (callers guard their updates with ``if bar:``)."""
    if quiet:
        return nullcontext()
    return rich_progress(transient=transient)


def track(items: Iterable[T], description: str, quiet: bool = False) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar (none when ``quiet``)."""
    if quiet:
        yield from items
        return
    total = len(items) if isinstance(items, Sized) else None
    with rich_progress(transient=True) as bar:
        task = bar.add_task(description, total=total, info="")
        for item in items:
            yield item
            bar.advance(task)
