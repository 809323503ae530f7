"""The random-map verdict of a results store: which metrics tell the methods from a random map.

A run scored with the random-map control (``cleargrad evaluate --random-control``, or any
run whose methods include ``random``, as the demo's do) holds per-image rows of the
control beside those of every method. :func:`verdict_table` reads them and applies
:func:`cleargrad.metrics.verdict.random_map_verdict` per metric:

- for each method, the per-image paired differences ``method - control`` over the images
  where both have a defined value *for the same target class* (an image explained for
  another class by one of them, as GAD can be, is left out of that pair);
- the method **separates** from the random map when the mean difference is in the
  metric's better direction (its ``@metric`` direction, as recorded in the store) by more
  than ``z`` standard errors (default 2); **worse** when it is beyond ``z`` s.e. in the
  other direction; **n.s.** otherwise;
- the metric is **uninformative** when fewer than half of the compared methods (rounded
  up) separate: it cannot tell these methods from a random map on these images.

Methods that read no model (``Method.reads_model = False``: another random map) are not
compared; they are listed in :attr:`VerdictTable.not_compared`. The verdict is derived
from the rows each time it is read (nothing extra is stored), so stores written before it
existed give it too when they hold the control's rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..metrics.verdict import MetricVerdict, Separation, random_map_verdict
from ..store import ResultRow, ResultStore

__all__ = [
    "CONTROL", "NO_CONTROL", "VerdictTable", "latest_settings", "verdict_from_rows", "verdict_notes", "verdict_table",
]

#: the method name of the random-map control (``cleargrad evaluate --random-control`` adds it)
CONTROL = "random"

#: what to do when a run has no control (the report and ``cleargrad report`` say it)
NO_CONTROL = (
    "it needs the random-map control among the methods: rerun the same "
    "`cleargrad evaluate` command with --random-control (on the same store only the control's rows "
    "are computed)"
)


@dataclass(frozen=True)
class VerdictTable:
    """The random-map verdict of one run, metric by metric.

    Attributes:
        control: the control method's name, None when the rows hold no control (then
            :attr:`verdicts` is empty and :attr:`available` is False).
        verdicts: ``{metric: MetricVerdict}`` (see :mod:`cleargrad.metrics.verdict`), for every
            metric with control rows; each holds one :class:`~cleargrad.metrics.verdict.Separation`
            per compared method (``mean``/``se``/``n`` of the paired difference ``method -
            control``, ``z`` signed so that > 0 is better than the control, ``better``, ``worse``).
        methods: the compared methods, in name order.
        not_compared: methods left out of the comparison (other controls that read no model).
        z: standard errors a difference must exceed to count.
    """

    control: str | None
    verdicts: dict[str, MetricVerdict]
    methods: tuple[str, ...]
    not_compared: tuple[str, ...]
    z: float

    @property
    def available(self) -> bool:
        """Whether the run has a control, so that there is a verdict."""
        return self.control is not None

    def uninformative(self) -> list[str]:
        """The metrics that cannot tell the compared methods from the random map."""
        return [k for k, v in self.verdicts.items() if v.separations and not v.informative]

    def separation(self, metric: str, method: str) -> Separation | None:
        """The comparison of ``method`` with the control on ``metric`` (None if not compared)."""
        v = self.verdicts.get(metric)
        return None if v is None else next((s for s in v.separations if s.method == method), None)

    def mark(self, metric: str, method: str) -> str:
        """``"separates"`` (better than the random map beyond ``z`` s.e.), ``"worse"`` (worse
        beyond ``z`` s.e.), ``"n.s."`` (within) or ``""`` (not compared)."""
        s = self.separation(metric, method)
        if s is None:
            return ""
        return "separates" if s.better else ("worse" if s.worse else "n.s.")

    def flag(self, metric: str) -> str:
        """The metric's verdict in words: ``"UNINFORMATIVE: cannot tell the methods from a random
        map (1/4 methods separate)"`` or ``"informative (3/4 methods separate)"``."""
        v = self.verdicts[metric]
        k, m = v.n_better, len(v.separations)
        if v.separations and not v.informative:
            return f"UNINFORMATIVE: cannot tell the methods from a random map ({k}/{m} methods separate)"
        return f"informative ({k}/{m} methods separate)"

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per metric and compared method (for a data frame or a CSV): ``metric``,
        ``direction``, ``method``, ``control``, ``mean_difference``, ``se``, ``n``, ``z``,
        ``mark``, ``metric_informative``."""
        out = []
        for k, v in self.verdicts.items():
            for s in v.separations:
                out.append({
                    "metric": k, "direction": v.direction, "method": s.method, "control": self.control,
                    "mean_difference": s.mean, "se": s.se, "n": s.n, "z": s.z, "mark": self.mark(k, s.method),
                    "metric_informative": v.informative,
                })
        return out

    def summary_lines(self) -> list[str]:
        """The terminal summary's lines: one per uninformative metric (none when all are informative)."""
        lines = []
        for k in self.uninformative():
            v = self.verdicts[k]
            lines.append(
                f"UNINFORMATIVE {k}: cannot tell the methods from a random map (only {v.n_better}/"
                f"{len(v.separations)} methods beat '{self.control}' by more than {self.z:g} s.e., paired by image)"
            )
        return lines


def latest_settings(store: ResultStore) -> str | None:
    """The settings hash the report shows by default: the most recent run that has results."""
    used = store.settings_with_results()
    ordered = [h for h, *_ in store.runs() if h in used]
    return ordered[-1] if ordered else (sorted(used)[-1] if used else None)


def _reads_model(name: str) -> bool:
    from ..core.registry import get_method
    from ..errors import ConfigError
    from ..families import load_families

    load_families()
    try:
        return bool(getattr(get_method(name).cls, "reads_model", True))
    except ConfigError:  # not a registered method (gad_BASE, a benchmark's own): it reads the model
        return True


def verdict_table(
    source: ResultStore | str | Path | Iterable[ResultRow],
    settings: str | None = None,
    *,
    control: str = CONTROL,
    z: float = 2.0,
    min_share: float = 0.5,
    directions: Mapping[str, str] | None = None,
) -> VerdictTable:
    """The random-map verdict of a run (see the module docstring for the rule).

    Args:
        source: a :class:`~cleargrad.store.ResultStore`, the path of a store (opened
            read-only), or result rows (:class:`~cleargrad.store.ResultRow`, one run's).
        settings: with a store, the settings hash of the run (default: the most recent run
            that has results, as the report shows).
        control: the control's method name.
        z: standard errors a paired difference must exceed to count (2: about a two-sided
            5 % test per comparison).
        min_share: the share of compared methods that must separate for the metric to be
            informative (``ceil(min_share * methods)``).
        directions: ``{metric: "higher" | "lower"}``; defaults to the directions the store
            recorded, then to the registered metrics' (:data:`cleargrad.metrics.METRICS`).

    Returns:
        A :class:`VerdictTable`; its ``control`` is None when the rows hold no row of
        ``control``.

    Raises:
        ConfigError: a metric whose direction is unknown (give it in ``directions``), or
            ``z``/``min_share`` out of range.
    """
    known: dict[str, str] = {}
    if isinstance(source, str | Path):
        with ResultStore(source, readonly=True) as st:
            return verdict_table(st, settings, control=control, z=z, min_share=min_share, directions=directions)
    if isinstance(source, ResultStore):
        h = settings if settings is not None else latest_settings(source)
        rows = source.results(h) if h is not None else []
        known = {k: d for k, (d, _, _) in source.metric_info().items()}
    else:
        rows = list(source)
    return _verdict(rows, control, z, min_share, {**known, **(directions or {})})


def verdict_from_rows(
    rows: list[ResultRow], directions: Mapping[str, str], control: str = CONTROL, z: float = 2.0,
    min_share: float = 0.5,
) -> VerdictTable:
    """The verdict of one run's ``rows`` with the metrics' ``directions`` (the report's call)."""
    return _verdict(rows, control, z, min_share, directions)


def verdict_notes(verdict: VerdictTable) -> list[dict[str, Any]]:
    """The report's notes: one per uninformative metric."""
    return [
        {"kind": "uninformative", "methods": [k], "text": verdict.flag(k) + (
            f": fewer than half (rounded up) of the compared methods beat the random map '{verdict.control}' "
            f"by more than {verdict.z:g} standard errors (paired by image), so its ranking of them is not evidence."
        )}
        for k in verdict.uninformative()
    ]


def _verdict(
    rows: list[ResultRow], control: str, z: float, min_share: float, directions: Mapping[str, str]
) -> VerdictTable:
    # per metric and method: {(image, target): value}; a pair needs the same image and target
    values: dict[str, dict[str, dict[tuple[str, int | None], float | None]]] = {}
    for r in rows:
        v = None if r.value is None or not math.isfinite(r.value) else float(r.value)
        values.setdefault(r.metric, {}).setdefault(r.method, {})[(r.image_id, r.target)] = v
    methods = sorted({r.method for r in rows})
    if control not in methods:
        return VerdictTable(None, {}, (), (), z)
    skipped = tuple(m for m in methods if m != control and not _reads_model(m))
    compared = tuple(m for m in methods if m != control and m not in skipped)
    scores = {
        metric: {m: v for m, v in by.items() if m == control or m in compared}
        for metric, by in sorted(values.items()) if control in by
    }
    verdicts = random_map_verdict(scores, control, directions=dict(directions), z=z, min_share=min_share)
    return VerdictTable(control, verdicts, compared, skipped, z)
