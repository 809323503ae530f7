"""Statistics the report shows: 95 % confidence intervals of means, paired comparisons
of methods, and methods that coincide (identical maps or values).

The confidence interval of a mean over ``n`` images is Student's t interval
``mean ± t(0.975, n - 1) · s / √n`` with ``s`` the sample standard deviation
(``ddof = 1``). Two methods are *separated* by a metric when a paired t-test of their
per-image differences (over the images both have a value for) rejects "no difference"
at level 0.05 after Holm's correction for the number of method pairs compared (with
many methods, uncorrected tests would call several pairs different by chance alone).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..store import ResultRow

__all__ = ["MeanCI", "coinciding_methods", "holm", "mean_ci", "paired_p_value", "separated_pairs", "t_quantile"]


def t_quantile(df: int, q: float = 0.975) -> float:
    """The ``q`` quantile of Student's t distribution with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(q, df))


@dataclass(frozen=True)
class MeanCI:
    """Mean of the defined values with its 95 % confidence interval.

    Attributes:
        mean: the mean (None when no value is defined).
        low / high: the interval (None with fewer than two defined values).
        n: defined values; ``n_undefined``: values left out (NaN, empty region).
    """

    mean: float | None
    low: float | None
    high: float | None
    n: int
    n_undefined: int = 0

    @property
    def half_width(self) -> float | None:
        """Half the width of the interval."""
        return None if self.low is None or self.high is None else (self.high - self.low) / 2


def mean_ci(values: Iterable[float | None], level: float = 0.95) -> MeanCI:
    """Mean and Student-t confidence interval of the finite values (others counted as
    undefined)."""
    vals = list(values)
    finite = [float(v) for v in vals if v is not None and math.isfinite(v)]
    n, und = len(finite), len(vals) - len(finite)
    if n == 0:
        return MeanCI(None, None, None, 0, und)
    mean = math.fsum(finite) / n
    if n < 2:
        return MeanCI(mean, None, None, n, und)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (n - 1))
    h = t_quantile(n - 1, 0.5 + level / 2) * sd / math.sqrt(n)
    return MeanCI(mean, mean - h, mean + h, n, und)


def _by_method(rows: Iterable[ResultRow], metric: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r.metric == metric and r.value is not None and math.isfinite(r.value):
            out[r.method][r.image_id] = float(r.value)
    return out


def paired_p_value(diffs: Sequence[float]) -> float:
    """Two-sided p-value of a paired t-test that the mean of ``diffs`` is 0 (at least two
    values; zero spread gives 0 for a non-zero mean and 1 otherwise)."""
    from scipy.stats import t

    n = len(diffs)
    mean = math.fsum(diffs) / n
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    if sd <= 1e-12 * max(1.0, abs(mean)):
        return 0.0 if abs(mean) > 1e-12 else 1.0
    return float(2 * t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))


def holm(p_values: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Holm's step-down rejections: sorted ascending, ``p_(k)`` is rejected while
    ``p_(k) <= alpha / (m - k + 1)``; the first failure stops."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    out = [False] * len(p_values)
    m = len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (m - rank):
            break
        out[i] = True
    return out


def separated_pairs(rows: Sequence[ResultRow], metric: str, methods: Sequence[str]) -> tuple[int, int]:
    """``(separated, compared)``: how many pairs of ``methods`` the metric separates
    (paired t-test, Holm-corrected over the pairs, level 0.05) out of the pairs with at
    least two shared images."""
    vals = _by_method(rows, metric)
    p_values = []
    for i, a in enumerate(methods):
        for b in methods[i + 1 :]:
            shared = sorted(set(vals.get(a, {})) & set(vals.get(b, {})))
            if len(shared) >= 2:
                p_values.append(paired_p_value([vals[a][k] - vals[b][k] for k in shared]))
    return sum(holm(p_values)), len(p_values)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to a positive scale factor (each map divided by its largest magnitude), to
    float16 precision: CAM and Grad-CAM on a GAP-linear head differ by the factor 1/(H W)."""
    if a.shape != b.shape:
        return False
    sa, sb = float(np.abs(a).max()), float(np.abs(b).max())
    if sa == 0 or sb == 0:
        return sa == sb
    return bool(np.abs(a / sa - b / sb).max() <= 2e-3)


def coinciding_methods(
    methods: Sequence[str],
    maps: dict[tuple[str, str], np.ndarray],
    rows: Sequence[ResultRow],
) -> list[tuple[list[str], str]]:
    """Groups of methods that gave the same explanations, with the evidence.

    With stored maps: methods whose maps agree on every stored image up to a positive
    scale factor (each map divided by its largest magnitude; float16 precision). Without maps: methods whose every
    metric value on every image is the same (to 1e-9 relative). Returns
    ``[(methods, "maps" | "values"), ...]`` for groups of two or more.
    """
    images = sorted({i for i, _ in maps})
    groups: list[tuple[list[str], str]] = []
    left = list(methods)
    if images:
        have = [m for m in left if all((i, m) in maps for i in images)]
        while have:
            m0, rest = have[0], have[1:]
            same = [m for m in rest if all(_same(maps[(i, m0)], maps[(i, m)]) for i in images)]
            if same:
                groups.append(([m0, *same], "maps"))
            have = [m for m in rest if m not in same]
        return groups
    table: dict[str, dict[tuple[str, str], float | None]] = defaultdict(dict)
    for r in rows:
        table[r.method][(r.image_id, r.metric)] = r.value
    have = [m for m in left if table.get(m)]

    def equal(a: dict[tuple[str, str], float | None], b: dict[tuple[str, str], float | None]) -> bool:
        if a.keys() != b.keys():
            return False
        for k, va in a.items():
            vb = b[k]
            if (va is None) != (vb is None):
                return False
            if va is not None and vb is not None and abs(va - vb) > 1e-9 * max(1.0, abs(va), abs(vb)):
                return False
        return True

    while have:
        m0, rest = have[0], have[1:]
        same = [m for m in rest if equal(table[m0], table[m])]
        if same:
            groups.append(([m0, *same], "values"))
        have = [m for m in rest if m not in same]
    return groups
