"""The metric registry: every metric declares its direction and category.

Reports (the CLI, the HTML report) read :data:`METRICS` to know whether higher or
lower is better and how to group the columns; nothing dispatches on metric names
elsewhere.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from ..core.names import snake_key
from ..core.target_objects import as_class_indices, is_target_object, target_selector
from ..errors import ConfigError

__all__ = ["CATEGORIES", "DIRECTIONS", "METRICS", "SHARES", "MetricInfo", "get_metric", "metric"]

Direction = Literal["higher", "lower"]
Category = Literal["faithfulness", "complexity", "localisation", "region", "robustness", "randomisation", "axiomatic"]

DIRECTIONS: tuple[str, ...] = ("higher", "lower")
CATEGORIES: tuple[str, ...] = (
    "faithfulness", "complexity", "localisation", "region", "robustness", "randomisation", "axiomatic",
)
#: the work :class:`cleargrad.metrics.SharedBatch` shares between metrics and methods:
#: ``"curve"``: the perturbation-curve passes over a map's pixel ranking and a canvas
#: (insertion, deletion); ``"masked"``: the one pass of the image masked by a map (average
#: drop, gain, increase); ``"perturbed"``: one set of perturbed images and their passes for
#: every method (infidelity); ``"map"``: nothing but the map (the metric function is called
#: on each explanation: sparseness, complexity)
SHARES: tuple[str, ...] = ("curve", "masked", "perturbed", "map")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class MetricInfo:
    """A registered metric.

    Attributes:
        name: the function's name (``"insertion"``, ``"average_drop"`` ...).
        direction: ``"higher"`` or ``"lower"``: which values are better.
        category: ``"faithfulness"``, ``"complexity"``, ``"localisation"``, ``"region"``
            or ``"robustness"``.
        summary: one line for tables and ``--help`` (the docstring's first line).
        fn: the callable itself.
        needs_model: whether the metric runs the model (``False`` for map-only metrics).
        shares: which of :data:`SHARES` computes the metric with work shared across the
            batch's metrics and methods (None: scored alone, by calling :attr:`fn`).
        shared_options: options the shared computation takes for this metric beyond those
            of its kind (an option outside both: scored alone).
        shared_params: fixed parameters of the shared computation; for ``"curve"``:
            ``start`` (``"image"``: from the image to the canvas, as deletion; ``"canvas"``:
            the reverse, as insertion) and ``substrate`` (the canvas when not given).
    """

    name: str
    direction: Direction
    category: Category
    summary: str
    fn: Callable[..., Any]
    needs_model: bool
    shares: str | None = None
    shared_options: frozenset[str] = frozenset()
    shared_params: dict[str, Any] = field(default_factory=dict, hash=False)

    def better(self, a: float, b: float) -> bool:
        """Whether value ``a`` is strictly better than ``b`` for this metric."""
        return a > b if self.direction == "higher" else a < b


#: name -> :class:`MetricInfo` of every public metric.
METRICS: dict[str, MetricInfo] = {}


def metric(
    *,
    direction: Direction,
    category: Category,
    needs_model: bool = True,
    shares: str | None = None,
    shared_options: tuple[str, ...] = (),
    shared_params: dict[str, Any] | None = None,
) -> Callable[[F], F]:
    """Decorator registering a metric function in :data:`METRICS`.

    ``shares``, ``shared_options``, ``shared_params``: what
    :class:`~cleargrad.metrics.SharedBatch` may share for it (see :class:`MetricInfo`).

    It also sets ``fn.direction``, ``fn.category`` and ``fn.info`` on the function, so
    ``cleargrad.metrics.insertion.direction == "higher"``.
    """
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if category not in CATEGORIES:
        raise ConfigError(f"category must be one of {CATEGORIES}, got {category!r}")
    if shares is not None and shares not in SHARES:
        raise ConfigError(f"shares must be None or one of {SHARES}, got {shares!r}")

    def deco(fn: F) -> F:
        fn = _with_target_objects(fn)
        doc = (fn.__doc__ or "").strip().splitlines()
        info = MetricInfo(
            fn.__name__, direction, category, doc[0] if doc else "", fn, needs_model,
            shares, frozenset(shared_options), dict(shared_params or {}),
        )
        METRICS[info.name] = info
        fn.direction = direction  # type: ignore[attr-defined]  # function attribute
        fn.category = category  # type: ignore[attr-defined]  # function attribute
        fn.info = info  # type: ignore[attr-defined]  # function attribute
        return fn

    return deco


def _with_target_objects(fn: F) -> F:
    """``fn`` taking target objects too, when it has ``x``, ``target`` and ``output``
    parameters: a target object (or a list, one per image) becomes the bound score
    selector and the integer index of :func:`~cleargrad.core.target_objects.target_selector`,
    so every perturbed row is scored by its own image's target."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn
    if not {"x", "target", "output"} <= set(sig.parameters):
        return fn

    @functools.wraps(fn)
    def scored_through_targets(*args: Any, **kwargs: Any) -> Any:
        bound = sig.bind_partial(*args, **kwargs)
        target = as_class_indices(bound.arguments.get("target"))
        if not is_target_object(target):
            return fn(*args, **kwargs)
        x: Any = bound.arguments.get("x")
        n = x.shape[0] if getattr(x, "dim", lambda: 0)() else 1
        select, _, index = target_selector(target, n, bound.arguments.get("output"))
        bound.arguments["target"], bound.arguments["output"] = index, select
        return fn(*bound.args, **bound.kwargs)

    return cast(F, scored_through_targets)  # functools.wraps: fn's signature


def get_metric(name: str) -> MetricInfo:
    """Look a metric up by name (case and ``-``/``_`` insensitive)."""
    key = snake_key(name)
    if key not in METRICS:
        raise ConfigError(f"unknown metric {name!r}; available: {', '.join(sorted(METRICS))}")
    return METRICS[key]
