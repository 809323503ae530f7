"""Reading ``torch.save`` files without running their code, with a one-line error.

``torch.load(weights_only=True)`` refuses pickles that need anything beyond tensors and
plain containers; its message is several sentences with terminal colour codes, advising
``weights_only=False``, which must not be followed for a file of unknown origin.
:func:`load_plain` turns that into a :class:`~cleargrad.DataError` naming the file, the
object the pickle asked for, and the safe fix.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

import torch

from ..errors import DataError

__all__ = ["UnsafePickleError", "load_plain", "pickle_refusal"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_GLOBAL = re.compile(r"GLOBAL ([A-Za-z_][\w.]*)")


class UnsafePickleError(DataError):
    """A ``torch.save`` file that needs code or classes to load; it was not unpickled."""


def pickle_refusal(path: str | os.PathLike, error: BaseException, fix: str) -> UnsafePickleError:
    """The one-line error for a file ``torch.load(weights_only=True)`` refused."""
    text = _ANSI.sub("", str(error))
    m = _GLOBAL.search(text)
    needs = f"it needs {m.group(1)}" if m else "it holds objects other than tensors and plain containers"
    is_class = m is not None and m.group(1).rsplit(".", 1)[-1][:1].isupper()
    kind = " (a pickled object, e.g. a whole model saved with torch.save(model))" if is_class else ""
    return UnsafePickleError(
        f"refusing to load {path}: {needs}{kind}; torch.load(weights_only=True) refused it, so nothing in "
        f"it was run. {fix}"
    )


def load_plain(path: str | os.PathLike, *, fix: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; a refused pickle raises
    :class:`UnsafePickleError` (a :class:`~cleargrad.DataError`) whose message ends with ``fix``."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise pickle_refusal(path, e, fix) from e
