"""Method registry: explanation methods register themselves under a name.

``cleargrad.methods()`` lists the registered names and ``cleargrad.explain`` looks a
method up here, so adding a method never touches a dispatch ladder.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import ConfigError

__all__ = ["MethodInfo", "register", "get_method", "list_methods"]

T = TypeVar("T")


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its canonical name, class, family and one-line summary."""

    name: str
    cls: Any
    family: str
    summary: str
    aliases: tuple[str, ...] = ()


_REGISTRY: dict[str, MethodInfo] = {}
_ALIASES: dict[str, str] = {}


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def register(name: str, *, family: str, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
    """Class decorator registering an explanation method under ``name``.

    The summary shown by ``cleargrad methods`` is the first line of the class docstring.
    """

    def deco(cls: T) -> T:
        doc = (getattr(cls, "__doc__", None) or "").strip().splitlines()
        info = MethodInfo(_norm(name), cls, family, doc[0] if doc else "", tuple(aliases))
        _REGISTRY[info.name] = info
        for a in (info.name, *aliases, getattr(cls, "__name__", name)):
            _ALIASES[_norm(a)] = info.name
        return cls

    return deco


def get_method(name: str) -> MethodInfo:
    """Look a method up by name or alias (case and ``-``/``_`` insensitive)."""
    key = _ALIASES.get(_norm(name))
    if key is None:
        close = difflib.get_close_matches(_norm(name), list(_ALIASES), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown method {name!r}.{hint} Valid methods: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[key]


def list_methods(family: str | None = None) -> list[MethodInfo]:
    """All registered methods (optionally of one family), sorted by family then name."""
    infos = [i for i in _REGISTRY.values() if family is None or i.family == family]
    return sorted(infos, key=lambda i: (i.family, i.name))
