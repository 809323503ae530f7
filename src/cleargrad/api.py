"""Access to every method by name: :func:`explain` and :func:`methods`."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from . import families as _families  # noqa: F401  (registers the built-in families' loader)
from .core.registry import list_methods, make_method
from .core.targets import TargetLike
from .errors import ConfigError

__all__ = ["explain", "gad_for", "methods", "make_method", "split_gad"]


def methods(family: str | None = None) -> list[str]:
    """Names of the registered methods (``family``: ``"attribution"``, ``"cam"``, ...)."""
    return [i.name for i in list_methods(family)]


def split_gad(method: str) -> str | None:
    """The base method of ``"gad:BASE"`` (``None`` for any other name)."""
    head, sep, base = method.strip().partition(":")
    if sep and head.strip().lower() == "gad":
        if not base.strip():
            raise ConfigError("gad:BASE needs a base method, e.g. 'gad:saliency'")
        return base.strip()
    return None


def explain(
    model: nn.Module,
    x: torch.Tensor,
    method: str = "saliency",
    target: TargetLike = None,
    *,
    gad: Any = None,
    options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """Explain ``x`` with the method registered as ``method``.

    Keyword arguments the method's constructor takes (``layer=``, ``output=``,
    ``allow_train_mode=``, ...) go to it; the rest go to ``attribute``. See
    :func:`methods` for the names.

    ``method="gad:BASE"`` runs GAD over the base method ``BASE``: pass ``gad=`` a fitted
    :class:`~cleargrad.GAD` or the folder it was saved to (``GAD.save`` or
    ``cleargrad gad fit``), built on ``model``. Keyword arguments then go to the base
    method, except ``tau``, ``combine``, ``reduction`` and ``batch_models``, which go to
    GAD. The result is the fused map ``(N, 1, H, W)`` in [0, 1]; ``target=None`` explains
    the model's prediction among the classes the GAD was fitted for.

    ``options``: more keyword arguments, for option names that ``explain`` takes itself
    (Integrated Gradients' quadrature rule ``method``); merged with ``kwargs``.

    >>> cg.explain(model, x, method="integrated_gradients", target=3, n_steps=32)
    >>> cg.explain(model, x, method="integrated_gradients", options={"method": "riemann_trapezoid"})
    >>> cg.explain(model, x, method="gad:saliency", gad="gad-dir")
    """
    if options is not None:
        if not isinstance(options, dict):
            raise ConfigError(f"options= must be a dict of option names to values, got {type(options).__name__}")
        both = sorted(set(options) & set(kwargs))
        if both:
            raise ConfigError(f"option(s) {', '.join(both)} given both in options= and as keyword arguments")
        kwargs = {**kwargs, **options}
    base = split_gad(method)
    if base is not None:
        return gad_for(model, gad, base, **kwargs).attribute(x, target=target)
    if gad is not None:
        raise ConfigError(f"gad= is only used with method='gad:BASE', not with {method!r}")
    inst, options = make_method(model, method, **kwargs)
    return inst.attribute(x, target=target, **options)


#: GAD settings that ``gad_for`` takes from the keyword arguments (the rest go to the base method)
GAD_SETTINGS = ("tau", "combine", "reduction", "batch_models")


def gad_for(model: nn.Module, gad: Any, base: str, **kwargs: Any) -> Any:
    """A fitted GAD on ``model`` explaining with ``base``.

    ``gad`` is a fitted :class:`~cleargrad.GAD` (its model must be ``model``) or a folder
    saved by ``GAD.save`` / ``cleargrad gad fit``. ``kwargs``: GAD's ``tau``,
    ``combine``, ``reduction``, ``batch_models``; every other key is an option of ``base``.
    """
    from .gad import GAD

    if gad is None:
        raise ConfigError(
            "method 'gad:BASE' needs gad=: a fitted cleargrad.GAD or the folder it was saved to "
            "(GAD.save, or `cleargrad gad fit --out DIR`)"
        )
    if isinstance(gad, (str, os.PathLike)):
        gad = GAD.load(str(gad), model)
    elif not isinstance(gad, GAD):
        raise ConfigError(f"gad= must be a fitted cleargrad.GAD or a folder path, got {type(gad).__name__}")
    elif gad.model is not model:
        raise ConfigError("gad= was fitted on another model object: pass the model it was fitted on")
    settings = {k: kwargs.pop(k) for k in GAD_SETTINGS if k in kwargs}
    return gad.with_base(base, base_options=kwargs, **settings)
