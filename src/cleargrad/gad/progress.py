"""A rich progress bar that can be switched off."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["progress_bar"]


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[_WithInfo]:
    """A transient rich :class:`Progress`; with ``enabled=False`` it draws nothing."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        transient=True,
        disable=not enabled,
    )
    with bar:
        yield _WithInfo(bar)


class _WithInfo:
    """Proxy adding an empty ``info`` field to every task, so the column always renders."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar

    def add_task(self, description: str, total: float | None = None, **fields: object) -> int:
        fields.setdefault("info", "")
        return self._bar.add_task(description, total=total, **fields)

    def __getattr__(self, name: str) -> object:
        return getattr(self._bar, name)
