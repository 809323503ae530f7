"""The ``cleargrad`` command line (``cleargrad --help``, ``python -m cleargrad``)."""

from .app import app, main

__all__ = ["app", "main"]
