"""Rich progress bars for long loops, with a ``quiet`` switch (shared helper)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from contextlib import nullcontext
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["progress_bar", "track"]

T = TypeVar("T")


def progress_bar(quiet: bool = False, transient: bool = False) -> Progress | nullcontext:
    """A rich progress bar with an ``info`` text field, or a context yielding None when
    ``quiet`` (callers guard their updates with ``if bar:``)."""
    if quiet:
        return nullcontext()
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=transient,
    )


def track(items: Iterable[T], description: str, quiet: bool = False) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar (none when ``quiet``)."""
    if quiet:
        yield from items
        return
    total = len(items) if isinstance(items, Sized) else None
    with progress_bar(transient=True) as bar:
        task = bar.add_task(description, total=total, info="")
        for item in items:
            yield item
            bar.advance(task)
