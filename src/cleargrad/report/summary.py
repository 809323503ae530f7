"""Aggregates of a results store: the method × metric table and per-class breakdowns."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..store import ResultRow

__all__ = ["Cell", "MetricColumn", "Table", "summarise"]


@dataclass
class Cell:
    """Mean of the defined values of one method and metric, with counts."""

    mean: float | None
    n: int
    n_undefined: int = 0
    best: bool = False

    def text(self) -> str:
        """The mean formatted for a table (``n/a`` when no value is defined)."""
        return "n/a" if self.mean is None else f"{self.mean:.4g}"


@dataclass(frozen=True)
class MetricColumn:
    """A metric as a table column: higher or lower is better."""

    name: str
    direction: str = "higher"
    category: str = ""
    summary: str = ""

    @property
    def arrow(self) -> str:
        """``↑`` when higher is better, ``↓`` when lower is better."""
        return "\u2191" if self.direction == "higher" else "\u2193"


@dataclass
class Table:
    """Rows (methods) × columns (metrics) of :class:`Cell` means, best per column marked."""

    methods: list[str]
    metrics: list[MetricColumn]
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)

    def cell(self, method: str, metric: str) -> Cell:
        """The cell of ``method`` and ``metric`` (empty if there is no value)."""
        return self.cells.get((method, metric), Cell(None, 0))


def _table(rows: Iterable[ResultRow], columns: dict[str, MetricColumn], methods: list[str]) -> Table:
    acc: dict[tuple[str, str], list[float | None]] = defaultdict(list)
    for r in rows:
        acc[(r.method, r.metric)].append(r.value)
    metrics = [columns[m] for m in sorted(columns)]
    table = Table(methods, metrics)
    for key, values in acc.items():
        defined = [v for v in values if v is not None and math.isfinite(v)]
        mean = sum(defined) / len(defined) if defined else None
        table.cells[key] = Cell(mean, len(values), len(values) - len(defined))
    for col in metrics:
        cells = [(table.cells[(m, col.name)].mean, m) for m in methods if (m, col.name) in table.cells]
        means = [(v, m) for v, m in cells if v is not None]
        if len(means) < 2:
            continue
        best = max(v for v, _ in means) if col.direction == "higher" else min(v for v, _ in means)
        for v, m in means:
            if v == best:
                table.cells[(m, col.name)].best = True
    return table


def summarise(
    rows: list[ResultRow],
    columns: dict[str, MetricColumn],
    class_of: dict[str, str | None],
) -> tuple[Table, dict[str, Table]]:
    """The overall table and one table per class (classes from ``class_of[image_id]``).

    Metrics without a declared direction are taken as higher-is-better.
    """
    for r in rows:
        columns.setdefault(r.metric, MetricColumn(r.metric))
    methods = sorted({r.method for r in rows})
    overall = _table(rows, columns, methods)
    per_class: dict[str, Table] = {}
    by_class: dict[str, list[ResultRow]] = defaultdict(list)
    for r in rows:
        c = class_of.get(r.image_id)
        if c is not None:
            by_class[c].append(r)
    for c in sorted(by_class):
        per_class[c] = _table(by_class[c], columns, methods)
    return overall, per_class
