"""Explanation methods as the command runs them: built by registry name, with options.

Every registered method (``cleargrad.methods()``) is available by name, so new methods
appear on the command line without touching this file. Options come from
``-o METHOD.KEY=VALUE`` (values parsed as JSON, else kept as strings).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..api import make_method
from ..core.registry import get_method, list_methods
from ..errors import ConfigError

__all__ = ["Explainer", "build_explainer", "method_names", "parse_options", "split_names"]

#: fast settings used unless the user sets the option (documented in ``cleargrad methods``)
FAST_DEFAULTS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 32},
    "smoothgrad": {"n_samples": 16},
    "expected_gradients": {"n_samples": 16},
    "expected_gradcam": {"n_samples": 16},
    "smooth_gradcam_plus_plus": {"n_samples": 16},
    "integrated_gradcam": {"n_steps": 16},
}

ExplainFn = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class Explainer:
    """A named explanation function ``fn(x, targets, generator) -> attribution``.

    ``reference`` names the method whose map region metrics compare against (GAD: its
    base method).
    """

    name: str
    fn: ExplainFn
    family: str = "attribution"
    summary: str = ""
    reference: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def method_names() -> list[str]:
    """Every registered method name."""
    return [i.name for i in list_methods()]


def split_names(text: str) -> list[str]:
    """``"a,b , c"`` -> ``["a", "b", "c"]`` (empty entries dropped)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def _parse_value(v: str) -> Any:
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def parse_options(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["integrated_gradients.n_steps=16", "n_samples=8"]`` -> per-method option dicts.

    An option without ``METHOD.`` applies to every method whose signature accepts it
    (key ``"*"``).
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"option {item!r} must look like METHOD.KEY=VALUE or KEY=VALUE")
        method, dot, name = key.strip().rpartition(".")
        scope = get_method(method).name if dot else "*"
        out.setdefault(scope, {})[name] = _parse_value(value.strip())
    return out


def _accepted(obj: Any) -> set[str] | None:
    """Keyword names ``obj.attribute`` (or its ``_attribute``) takes; None when it takes any."""
    names: set[str] = set()
    open_ended = True
    for fn_name in ("attribute", "_attribute"):
        fn = getattr(obj, fn_name, None)
        if fn is None:
            continue
        params = inspect.signature(fn).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        open_ended = any(p.kind == p.VAR_KEYWORD for p in params)
        if not open_ended:
            break
    return None if open_ended else names


def _init_accepts(cls: type, name: str) -> bool:
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        if name in params:
            return True
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return False
    return False


def build_explainer(
    model: nn.Module,
    name: str,
    *,
    layer: str = "auto",
    options: Mapping[str, Mapping[str, Any]] | None = None,
    references: torch.Tensor | None = None,
) -> Explainer:
    """The registered method ``name`` bound to ``model``.

    ``layer`` goes to methods that take one (the CAM family); ``references`` (a fixed set
    of images) to methods that need them (Expected Gradients, Expected Grad-CAM). Options
    that a method does not take are an error when they were meant for it, and ignored
    when they were given for all methods.
    """
    info = get_method(name)
    options = options or {}
    kw: dict[str, Any] = dict(FAST_DEFAULTS.get(info.name, {}))
    specific = dict(options.get(info.name, {}))
    if _init_accepts(info.cls, "layer"):
        kw["layer"] = layer
    inst, rest = make_method(model, info.name, **{**kw, **specific})
    accepted = _accepted(inst)
    for key, value in options.get("*", {}).items():
        if accepted is None or key in accepted:
            rest.setdefault(key, value)
    if accepted is not None:
        unknown = sorted(k for k in rest if k not in accepted)
        stray = [k for k in unknown if k in kw and k not in specific]
        for k in stray:  # fast defaults that this implementation does not take
            rest.pop(k)
        bad = [k for k in unknown if k not in stray]
        if bad:
            raise ConfigError(
                f"method {info.name!r} does not take option(s) {', '.join(bad)}; "
                f"it takes: {', '.join(sorted(accepted))}"
            )
    takes_generator = accepted is None or "generator" in accepted
    if references is not None and (accepted is None or "references" in accepted):
        rest.setdefault("references", references)

    def fn(x: torch.Tensor, targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        extra = {"generator": generator} if takes_generator else {}
        return inst.attribute(x, target=targets, **rest, **extra)

    shown = {k: v for k, v in {**kw, **specific, **rest}.items() if k != "references"}
    return Explainer(info.name, fn, info.family, info.summary, options=shown)
