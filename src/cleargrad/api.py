"""Access to every method by name: :func:`explain` and :func:`methods`."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from .core.registry import MethodInfo, get_method, list_methods
from .core.targets import TargetLike

__all__ = ["explain", "methods", "make_method"]


def methods(family: str | None = None) -> list[str]:
    """Names of the registered methods (``family``: ``"attribution"``, ``"cam"``, ...)."""
    return [i.name for i in list_methods(family)]


def _init_params(cls: type) -> set[str]:
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


def make_method(model: nn.Module, method: str, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Build the named method; returns ``(instance, remaining attribute options)``."""
    info: MethodInfo = get_method(method)
    init_keys = _init_params(info.cls) - {"model"}
    init_kw = {k: v for k, v in kwargs.items() if k in init_keys}
    rest = {k: v for k, v in kwargs.items() if k not in init_keys}
    return info.cls(model, **init_kw), rest


def explain(
    model: nn.Module, x: torch.Tensor, method: str = "saliency", target: TargetLike = None, **kwargs: Any
) -> torch.Tensor:
    """Explain ``x`` with the method registered as ``method``.

    Keyword arguments the method's constructor takes (``layer=``, ``output=``,
    ``allow_train_mode=``, ...) go to it; the rest go to ``attribute``. See
    :func:`methods` for the names.

    >>> cg.explain(model, x, method="integrated_gradients", target=3, n_steps=32)
    """
    inst, options = make_method(model, method, **kwargs)
    return inst.attribute(x, target=target, **options)
