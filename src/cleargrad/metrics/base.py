"""The metric registry: every metric declares its direction and category.

Reports (the CLI, the HTML report) read :data:`METRICS` to know whether higher or
lower is better and how to group the columns; nothing dispatches on metric names
elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from ..errors import ConfigError

__all__ = ["CATEGORIES", "DIRECTIONS", "METRICS", "MetricInfo", "get_metric", "metric"]

Direction = Literal["higher", "lower"]
Category = Literal["faithfulness", "complexity", "localisation", "region", "robustness", "randomisation", "axiomatic"]

DIRECTIONS: tuple[str, ...] = ("higher", "lower")
CATEGORIES: tuple[str, ...] = (
    "faithfulness", "complexity", "localisation", "region", "robustness", "randomisation", "axiomatic",
)

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
    """

    name: str
    direction: Direction
    category: Category
    summary: str
    fn: Callable[..., Any]
    needs_model: bool

    def better(self, a: float, b: float) -> bool:
        """Whether value ``a`` is strictly better than ``b`` for this metric."""
        return a > b if self.direction == "higher" else a < b


#: name -> :class:`MetricInfo` of every public metric.
METRICS: dict[str, MetricInfo] = {}


def metric(*, direction: Direction, category: Category, needs_model: bool = True) -> Callable[[F], F]:
    """Decorator registering a metric function in :data:`METRICS`.

    It also sets ``fn.direction``, ``fn.category`` and ``fn.info`` on the function, so
    ``cleargrad.metrics.insertion.direction == "higher"``.
    """
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if category not in CATEGORIES:
        raise ConfigError(f"category must be one of {CATEGORIES}, got {category!r}")

    def deco(fn: F) -> F:
        doc = (fn.__doc__ or "").strip().splitlines()
        info = MetricInfo(fn.__name__, direction, category, doc[0] if doc else "", fn, needs_model)
        METRICS[info.name] = info
        fn.direction = direction  # type: ignore[attr-defined]
        fn.category = category  # type: ignore[attr-defined]
        fn.info = info  # type: ignore[attr-defined]
        return fn

    return deco


def get_metric(name: str) -> MetricInfo:
    """Look a metric up by name (case and ``-``/``_`` insensitive)."""
    key = name.strip().lower().replace("-", "_")
    if key not in METRICS:
        raise ConfigError(f"unknown metric {name!r}; available: {', '.join(sorted(METRICS))}")
    return METRICS[key]
