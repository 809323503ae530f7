"""Method registry: explanation methods register themselves under a name.

``cleargrad.methods()`` lists the registered names and ``cleargrad.explain`` looks a
method up here, so adding a method never touches a dispatch ladder.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import ConfigError
from .names import method_key

__all__ = [
    "MethodInfo",
    "add_loader",
    "get_method",
    "init_params",
    "list_methods",
    "load_families",
    "make_method",
    "register",
]

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

_LOADERS: list[Callable[[], None]] = []
_loaded = False


def add_loader(loader: Callable[[], None]) -> None:
    """Have ``loader()`` run before the first look-up (it imports packages that register
    methods). The layer above the families adds the import of the built-in ones
    (:mod:`cleargrad.families`), so that this module names no package above it."""
    global _loaded
    if loader not in _LOADERS:
        _LOADERS.append(loader)
        _loaded = False


def load_families() -> None:
    """Run the added loaders once (every built-in method is then registered)."""
    global _loaded
    if _loaded:
        return
    _loaded = True  # first: a family's import may itself look a method up
    for loader in list(_LOADERS):
        loader()


def _norm(name: str) -> str:
    return method_key(name)


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
    """Look a method up by name or alias (case and ``-``/``_`` insensitive).

    An unknown name raises :class:`~cleargrad.ConfigError` listing the valid names; its
    "did you mean" suggestions are canonical method names (an alias that is close is
    shown as the method it stands for).
    """
    load_families()
    key = _ALIASES.get(_norm(name))
    if key is None:
        raise ConfigError(
            f"unknown method {name!r}.{_suggest(name)} Valid methods: {', '.join(sorted(_REGISTRY))}, "
            "and gad:BASE for GAD over any of them."
        )
    return _REGISTRY[key]


def _suggest(name: str) -> str:
    """`` Did you mean: a, b?`` (canonical names only), or a GAD hint, or ``""``."""
    norm = _norm(name)
    if norm == "gad" or norm.startswith(("gad_", "gad:")):
        return (
            " GAD is run as gad:BASE with a fitted GAD, e.g. method 'gad:saliency' with gad=... "
            "(command line: --method gad:saliency --gad DIR, after `cleargrad gad fit`)."
        )
    close = difflib.get_close_matches(norm, list(_ALIASES), n=6, cutoff=0.5)
    shown: dict[str, str] = {}
    for c in close:
        canonical = _ALIASES[c]
        if canonical not in shown:
            shown[canonical] = canonical if c == canonical else f"{canonical} (alias {c!r})"
    names = list(shown.values())[:3]
    return f" Did you mean: {', '.join(names)}?" if names else ""


def list_methods(family: str | None = None) -> list[MethodInfo]:
    """All registered methods (optionally of one family), sorted by family then name."""
    load_families()
    infos = [i for i in _REGISTRY.values() if family is None or i.family == family]
    return sorted(infos, key=lambda i: (i.family, i.name))


def init_params(cls: type) -> set[str]:
    """The keyword parameters a method class's constructor takes, following ``**kwargs``
    up its bases (``model`` included)."""
    params: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        sig = inspect.signature(init)
        params |= {
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
        if not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
            break
    return params


def make_method(model: Any, method: str, /, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Build the method registered as ``method`` on ``model``: the keyword arguments its
    constructor takes go to it; returns ``(instance, remaining attribute options)``.
    ``model`` and ``method`` are positional-only, so every option name is free (Integrated
    Gradients' quadrature rule is its ``method`` option)."""
    info = get_method(method)
    init_keys = init_params(info.cls) - {"model"}
    init_kw = {k: v for k, v in kwargs.items() if k in init_keys}
    rest = {k: v for k, v in kwargs.items() if k not in init_keys}
    return info.cls(model, **init_kw), rest
