"""Old home of the progress helpers: see :mod:`cleargrad.core.progress`."""

from .core.progress import progress_bar, track

__all__ = ["progress_bar", "track"]
