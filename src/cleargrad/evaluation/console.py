"""Terminal output of the command: a stderr console for messages and progress bars."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

__all__ = ["UI"]

T = TypeVar("T")


class UI:
    """Messages and progress bars on stderr (results go to stdout); ``quiet`` silences both.

    Args:
        quiet: print nothing but results and errors.
        rank: process rank under ``torchrun``; only rank 0 shows progress and messages.
    """

    def __init__(self, quiet: bool = False, rank: int = 0) -> None:
        self.quiet = quiet or rank != 0
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        out = Console(highlight=False)
        # piped output (CI logs, tests) gets wide lines instead of rich's 80-column default
        self.out = out if out.is_terminal else Console(highlight=False, width=200)

    def info(self, msg: str) -> None:
        """A progress message (hidden with ``--quiet``)."""
        if not self.quiet:
            self.err.print(msg, markup=False)

    def warn(self, msg: str) -> None:
        """A warning (hidden with ``--quiet``)."""
        if not self.quiet:
            self.err.print(f"[yellow]warning:[/yellow] {escape(msg)}", markup=True)

    @contextmanager
    def progress(self) -> Iterator[Progress]:
        """A rich progress display (disabled when quiet)."""
        from ..core.progress import rich_progress  # here: cleargrad.core loads torch

        p = rich_progress(info=False, console=self.err, disable=self.quiet)
        with p:
            yield p

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """Iterate with a progress bar."""
        with self.progress() as p:
            yield from p.track(items, total=total, description=description)
