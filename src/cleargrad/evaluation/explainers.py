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

from ..api import GAD_SETTINGS, make_method, split_gad
from ..core.options import check_options
from ..core.registry import get_method, init_params, list_methods
from ..errors import ConfigError
from ..families import load_registries
from .reshape import parse_reshape

__all__ = [
    "Explainer",
    "build_explainer",
    "build_gad_explainer",
    "is_gad",
    "option_scope",
    "check_global_options",
    "fast_defaults",
    "load_registries",
    "method_names",
    "parse_options",
    "split_names",
]

#: ``fn(x, targets, generator)``: targets are class indices ``(N,)`` or per-image target objects
ExplainFn = Callable[[torch.Tensor, Any, torch.Generator], torch.Tensor]


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
    #: classes the method can explain (GAD: those it was fitted for); ``--target auto``
    #: then explains the model's top class among them. None: any class.
    classes: tuple[int, ...] | None = None
    #: option names the method takes (None: not known)
    accepts: frozenset[str] | None = None
    #: ``f(x) -> layer names`` the method explains ``x`` at (CAM methods; ``layer="auto"``
    #: resolved), None for methods without a layer
    layer_fn: Callable[[torch.Tensor], tuple[str, ...]] | None = None

    def resolved_layers(self, x: torch.Tensor) -> tuple[str, ...]:
        """The dotted names of the layers the method explains ``x`` at (empty: no layer).
        After a call on inputs of ``x``'s shape this costs nothing (``"auto"`` is cached)."""
        return () if self.layer_fn is None else tuple(self.layer_fn(x))


def fast_defaults(name: str) -> dict[str, Any]:
    """The command line's fast defaults for the method registered as ``name`` (may be empty)."""
    try:
        return dict(get_method(name).cls.fast_options)  # stated on the class (Method.fast_options)
    except (ConfigError, AttributeError):  # not a registered method, or not a Method
        return {}


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
        scope = option_scope(method) if dot else "*"
        out.setdefault(scope, {})[name] = _parse_value(value.strip())
    return out


def option_scope(method: str) -> str:
    """The canonical name options of ``method`` are filed under (``gad:BASE`` kept as such)."""
    base = split_gad(method)
    return f"gad:{get_method(base).name}" if base is not None else get_method(method).name


def is_gad(name: str) -> bool:
    """Whether ``name`` is ``gad:BASE``."""
    return split_gad(name) is not None


#: where a method's call options are declared, outermost first
_OPTION_CHAIN = ("attribute", "attribute_layers", "_attribute", "_raw_maps", "_expected")


def _declared(obj: Any) -> set[str]:
    """Keyword names declared explicitly along the method's call chain.

    Options hidden behind ``**options`` of every function are not found; such options
    are still passed when the user names them for this method (the method then checks them).
    """
    names: set[str] = set()
    for fn_name in _OPTION_CHAIN:
        fn = getattr(obj, fn_name, None)
        if fn is None:
            continue
        params = inspect.signature(fn).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return names - {"self", "x", "target", "modules"}


def _init_accepts(cls: type, name: str) -> bool:
    return name in init_params(cls)


def build_explainer(
    model: nn.Module,
    name: str,
    *,
    layer: str = "auto",
    reshape: str = "auto",
    options: Mapping[str, Mapping[str, Any]] | None = None,
    references: torch.Tensor | None = None,
    output: Any = None,
) -> Explainer:
    """The registered method ``name`` bound to ``model``.

    ``layer`` goes to methods that take one (the CAM family), and so does ``reshape`` (the
    command-line form of :func:`~cleargrad.cli.reshape.parse_reshape`); ``references`` (a fixed set
    of images) to methods that declare them (Expected Gradients, Expected Grad-CAM), and so
    does a seeded ``generator`` on every call; ``output`` (an output selector, ``--output``)
    to every method that takes one. Options given for this method
    (``METHOD.KEY``) are passed as they are (the method rejects the ones it does not take);
    options given for all methods only reach the methods that declare them.
    """
    info = get_method(name)
    options = options or {}
    kw: dict[str, Any] = dict(fast_defaults(info.name))
    specific = dict(options.get(info.name, {}))
    if _init_accepts(info.cls, "layer"):
        kw["layer"] = layer
    if reshape != "auto" and _init_accepts(info.cls, "reshape") and "reshape" not in specific:
        kw["reshape"] = parse_reshape(reshape)
    if output is not None and _init_accepts(info.cls, "output") and "output" not in specific:
        kw["output"] = output
    inst, rest = make_method(model, info.name, **{**kw, **specific})
    declared = _declared(inst)
    if hasattr(inst, "option_names"):
        declared |= set(inst.option_names())
        check_options(
            f"method {info.name!r} (-o {info.name}.KEY=VALUE)",
            [k for k in specific if k in rest],
            declared | set(_init_names(info.cls)),
        )
    dropped = [k for k in rest if k in kw and k not in specific and k not in declared]
    for key in dropped:
        rest.pop(key)  # a fast default this implementation does not take
    for key, value in options.get("*", {}).items():
        if key in declared:
            rest.setdefault(key, value)
    takes_generator = "generator" in declared
    if references is not None and "references" in declared:
        rest.setdefault("references", references)
    elif references is not None and info.name == "deeplift_shap":
        rest.setdefault("baselines", references)  # its baseline distribution, named as in Captum

    def fn(x: torch.Tensor, targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        extra = {"generator": generator} if takes_generator else {}
        return inst.attribute(x, target=targets, **rest, **extra)

    shown = {k: v for k, v in {**kw, **specific, **rest}.items()
             if k not in ("references", "output") and k not in dropped and v is not references}
    if "reshape" in kw and "reshape" in shown:
        shown["reshape"] = reshape  # the command-line text, not the spec object
    return Explainer(
        info.name, fn, info.family, info.summary, options=shown, accepts=frozenset(declared),
        layer_fn=_layer_names(model, inst),
    )


def _layer_names(model: nn.Module, inst: Any) -> Callable[[torch.Tensor], tuple[str, ...]] | None:
    """``x -> names`` of the layers a CAM method explains ``x`` at, or None (no layer)."""
    resolve = getattr(inst, "resolve_layers", None)
    if resolve is None:
        return None
    from ..core import layer_name

    return lambda x: tuple(layer_name(model, m) for m in resolve(x))


def build_gad_explainer(
    model: nn.Module,
    name: str,
    gad: Any,
    *,
    layer: str = "auto",
    reshape: str = "auto",
    options: Mapping[str, Mapping[str, Any]] | None = None,
    references: torch.Tensor | None = None,
    output: Any = None,
) -> Explainer:
    """``gad:BASE`` as an explainer named ``gad_BASE``, over a fitted GAD on ``model``.

    The base method gets the command line's fast defaults, ``layer`` and ``reshape`` (CAM bases), the
    ``references`` (bases that declare them) and a seeded ``generator`` per call (bases
    that declare one); options ``-o gad:BASE.KEY=VALUE`` go to the base method, except
    GAD's ``tau``, ``combine``, ``reduction``, ``batch_models``. Region metrics compare it
    with its base method (``reference``); ``--target auto`` explains the top class among
    the GAD's classes.
    """
    base_name = split_gad(name)
    if base_name is None:
        raise ConfigError(f"{name!r} is not gad:BASE")
    info = get_method(base_name)
    specific = dict((options or {}).get(f"gad:{info.name}", {}))
    settings = {k: specific.pop(k) for k in GAD_SETTINGS if k in specific}
    kw: dict[str, Any] = dict(fast_defaults(info.name))
    if _init_accepts(info.cls, "layer"):
        kw["layer"] = layer
    if reshape != "auto" and _init_accepts(info.cls, "reshape") and "reshape" not in specific:
        kw["reshape"] = parse_reshape(reshape)
    if output is not None and _init_accepts(info.cls, "output") and "output" not in specific:
        kw["output"] = output
    base_options = {**kw, **specific}
    probe, _ = make_method(model, info.name, **base_options)
    declared = _declared(probe)
    for key in [k for k in kw if k not in specific and k not in declared and not _init_accepts(info.cls, k)]:
        base_options.pop(key)  # a fast default this implementation does not take
    if references is not None and "references" in declared:
        base_options.setdefault("references", references)
    fused = gad.with_base(info.name, base_options=base_options, **settings)
    takes_generator = "generator" in declared

    def fn(x: torch.Tensor, targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        g = fused
        if takes_generator:
            g = fused.with_base(info.name, base_options={**base_options, "generator": generator}, **settings)
        return g.attribute(x, target=targets)

    shown = {k: v for k, v in base_options.items() if k not in ("references", "output")}
    if "reshape" in kw and "reshape" in shown:
        shown["reshape"] = reshape  # the command-line text, not the spec object
    shown.update(settings)
    shown.update({"n_support": gad.n_support, "strategy": gad.strategy})
    classes = tuple(sorted(fused._explained()))
    summary = f"GAD over {info.name}: the pixels {info.name} finds important in the model and all its support models"
    return Explainer(f"gad_{info.name}", fn, "gad", summary, reference=info.name, options=shown, classes=classes)


def check_global_options(options: Mapping[str, Mapping[str, Any]], explainers: Sequence[Explainer]) -> None:
    """Refuse a ``-o KEY=VALUE`` (for all methods) that none of ``explainers`` takes.

    Raises:
        ConfigError: the unknown key, with the options the chosen methods take.
    """
    if any(e.accepts is None for e in explainers):
        return
    valid = set().union(*(e.accepts for e in explainers if e.accepts is not None))
    names = ", ".join(e.name for e in explainers)
    check_options(f"-o KEY=VALUE: the chosen methods ({names})", list(options.get("*", {})), valid)


def _init_names(cls: type) -> set[str]:
    return init_params(cls) - {"model"}
