"""Registered metrics (``cleargrad.metrics.METRICS``) as the command runs them.

A metric function's arguments are filled by parameter name from what the command has
for a batch (the model, the images, the explanation, the targets, a generator, the
normalisation, an explanation function, a reference map), so a newly registered metric
is usable without changes here as long as its arguments are among those. Metrics that
need something the command does not have (object masks for localisation) are listed as
unavailable.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..core.names import snake_key
from ..errors import ConfigError

__all__ = ["BatchContext", "MetricRunner", "available_metrics", "metric_runner"]

_MAP_PARAMS = ("explanation", "explanations", "saliency", "attribution", "attributions", "saliency_map", "maps")
_FN_PARAMS = ("explain_fn", "explanation_fn", "explanation_func", "explain_func", "method")
_UNSUPPORTED = ("masks", "mask", "object_mask", "object_masks", "boxes", "box")
#: keyword options the command sets for every metric that takes them
_DEFAULTS = {"batch_size": None}


@dataclass
class BatchContext:
    """What the command knows about one batch when it scores an explanation."""

    model: nn.Module
    x: torch.Tensor
    targets: Any  # (N,) classes, or target objects (one per image)
    attribution: torch.Tensor
    explain_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    generator: torch.Generator
    mean: tuple[float, ...]
    std: tuple[float, ...]
    reference: torch.Tensor | None = None
    #: the selector of the scored output (``--output``; what target objects score)
    output: Any = None


@dataclass(frozen=True)
class MetricRunner:
    """A metric bound to the command: ``run(ctx) -> (N,)`` float tensor (NaN = undefined)."""

    name: str
    direction: str
    category: str
    summary: str
    fn: Callable[..., Any]
    options: tuple[tuple[str, Any], ...] = ()

    def run(self, ctx: BatchContext) -> torch.Tensor:
        """Score ``ctx.attribution`` for each image of ``ctx.x``."""
        return self.run_with_curves(ctx)[0]

    def run_with_curves(self, ctx: BatchContext) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`run`, plus the per-image curves ``(N, K)`` of a metric that can return
        them (a ``return_curves`` parameter, e.g. insertion and deletion); else None."""
        kwargs: dict[str, Any] = {}
        params = inspect.signature(self.fn).parameters
        open_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
        for p in params.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            value = _provide(p.name, ctx, self.name)
            if value is not _MISSING:
                kwargs[p.name] = value
        if open_kw:  # options forwarded to a helper (the masked-image metrics): the normalisation
            kwargs.setdefault("mean", ctx.mean)
            kwargs.setdefault("std", ctx.std)
        opts = dict(self.options)
        unknown = [k for k in opts if k not in params and not open_kw]
        if unknown:
            raise ConfigError(f"metric {self.name!r} does not take option(s) {', '.join(unknown)}")
        kwargs.update(opts)
        wants_curves = "return_curves" in params and "return_curves" not in opts
        if wants_curves:
            kwargs["return_curves"] = True
        with warnings.catch_warnings():
            # an undefined value (all-zero map, empty region) is stored as such and counted
            # under the results table; the metric's per-batch warning would only repeat it
            warnings.filterwarnings("ignore", message=r".* is undefined for ", category=RuntimeWarning)
            out = self.fn(**kwargs)
        curves = None
        if wants_curves and isinstance(out, tuple) and hasattr(out, "curves"):
            curves = torch.as_tensor(out.curves).detach().to("cpu", torch.float64)
        if isinstance(out, tuple):  # NamedTuple results: the first field is the per-image value
            out = out[0]
        out = torch.as_tensor(out).detach().to("cpu", torch.float64).reshape(-1)
        if out.numel() != ctx.x.shape[0]:
            raise RuntimeError(f"metric {self.name!r} returned {out.numel()} values for {ctx.x.shape[0]} images")
        if curves is not None and (curves.dim() != 2 or curves.shape[0] != out.numel()):
            curves = None
        return out, curves


_MISSING = object()


def _provide(name: str, ctx: BatchContext, metric: str) -> Any:
    if name == "model":
        return ctx.model
    if name in ("x", "inputs", "input"):
        return ctx.x
    if name in ("target", "targets"):
        return ctx.targets
    if name in _MAP_PARAMS or name == "map_a":
        return ctx.attribution
    if name == "map_b":
        if ctx.reference is None:
            raise ConfigError(f"metric {metric!r} needs a reference map")
        return ctx.reference
    if name == "region_mask":
        from ..metrics import convex_hull_region

        return convex_hull_region(ctx.attribution)
    if name in _FN_PARAMS:
        return ctx.explain_fn
    if name == "generator":
        return ctx.generator
    if name == "mean":
        return ctx.mean
    if name == "std":
        return ctx.std
    if name == "output" and ctx.output is not None:
        return ctx.output
    if name in _DEFAULTS:
        return _DEFAULTS[name]
    return _MISSING


def _supported(fn: Callable[..., Any]) -> str | None:
    """None when the command can call ``fn``; otherwise why not."""
    for p in inspect.signature(fn).parameters.values():
        if p.name in _UNSUPPORTED:
            return f"needs {p.name}"
        required = p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        if required and p.name not in {
            "model",
            "x",
            "inputs",
            "input",
            "target",
            "targets",
            "map_a",
            "map_b",
            "region_mask",
            *_MAP_PARAMS,
            *_FN_PARAMS,
        }:
            return f"needs {p.name}"
    return None


def _registry() -> dict[str, Any]:
    try:
        from ..metrics import METRICS
    except ImportError:
        return {}
    return dict(METRICS)


def available_metrics() -> dict[str, tuple[Any, str | None]]:
    """``name -> (MetricInfo, None | reason it cannot run from the command line)``."""
    return {name: (info, _supported(info.fn)) for name, info in sorted(_registry().items())}


def metric_runner(name: str, options: dict[str, Any] | None = None) -> MetricRunner:
    """The registered metric ``name`` as a :class:`MetricRunner`; unknown names list the valid ones."""
    avail = available_metrics()
    key = snake_key(name)
    usable = sorted(n for n, (_, why) in avail.items() if why is None)
    if key not in avail:
        raise ConfigError(f"unknown metric {name!r}. Valid metrics: {', '.join(usable) or '(none registered)'}")
    info, why = avail[key]
    if why is not None:
        raise ConfigError(
            f"metric {key!r} cannot run from the command line ({why}). Valid metrics: {', '.join(usable)}"
        )
    return MetricRunner(
        info.name, info.direction, info.category, info.summary, info.fn, tuple(sorted((options or {}).items()))
    )
