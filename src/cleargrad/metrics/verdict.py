"""Does a metric tell the compared methods from a random map? The random-map verdict.

A metric that scores a random map as well as a real explanation says nothing about the
explanations it ranks (the default insertion on 28x28 images, infidelity with Gaussian
noise, ...). Given per-image scores of several methods *and* of a random-map control on
the same images, :func:`random_map_verdict` judges, per metric and per method, the
paired difference ``method - control`` over the images both scored:

- mean ``d`` and standard error ``se = sd / sqrt(n)`` of the per-image differences
  (pairing removes the image-to-image spread that both share);
- the method **separates** from the random map when the difference is in the metric's
  better direction by more than ``z`` standard errors (default ``z = 2``: about a
  two-sided 5 % test for the ~30 or more images an evaluation has; a method that is
  *worse* than random beyond ``z`` s.e. is reported as such);
- the metric is **uninformative** on these images when fewer than half of the methods
  (rounded up) separate from the random map: it cannot rank explanations that it
  cannot tell from noise.

This is the rule the claims benchmarks use (``benchmarks/egc_claims.py``). With many
methods and metrics some separations at ``z = 2`` happen by chance; a stricter ``z``
(3) or fewer comparisons make the verdict more conservative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ConfigError, InputError
from .base import METRICS

__all__ = [
    "MetricVerdict",
    "Separation",
    "format_verdicts",
    "paired_difference",
    "random_map_verdict",
    "separation_mark",
]


@dataclass(frozen=True)
class Separation:
    """One method against the control on one metric: ``d = method - control``."""

    method: str
    mean: float
    se: float
    n: int
    z: float  #: d / se, signed so that > 0 means the method is better than the control
    better: bool
    worse: bool


@dataclass(frozen=True)
class MetricVerdict:
    """The verdict of one metric: its separations and whether it is informative."""

    metric: str
    direction: str
    separations: tuple[Separation, ...]
    informative: bool

    @property
    def n_better(self) -> int:
        return sum(s.better for s in self.separations)

    def summary(self) -> str:
        """One line: ``"informative (3/4 methods beat the random map)"`` or the reason it is not."""
        k, m = self.n_better, len(self.separations)
        if self.informative:
            return f"informative ({k}/{m} methods beat the random map)"
        return f"UNINFORMATIVE: only {k}/{m} methods beat the random map"


def _values(v: Any) -> dict[Any, float]:
    if isinstance(v, Mapping):
        return {k: float(x) for k, x in v.items() if x is not None}
    t = torch.as_tensor(v, dtype=torch.float64).detach().cpu().flatten()
    return dict(enumerate(t.tolist()))


def paired_difference(a: Any, b: Any) -> tuple[float, float, int]:
    """``(mean, se, n)`` of ``a - b`` over the images where both are finite.

    ``a`` and ``b``: per-image values, as sequences/tensors aligned by position or as
    ``{image: value}`` mappings (matched by key). ``se`` is NaN for fewer than 2 pairs.
    """
    va, vb = _values(a), _values(b)
    if not isinstance(a, Mapping) and not isinstance(b, Mapping) and len(va) != len(vb):
        raise InputError(f"paired scores need one value per image on both sides, got {len(va)} and {len(vb)}")
    d = [va[k] - vb[k] for k in va if k in vb and math.isfinite(va[k]) and math.isfinite(vb[k])]
    n = len(d)
    if n == 0:
        return float("nan"), float("nan"), 0
    t = torch.tensor(d, dtype=torch.float64)
    se = float(t.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    return float(t.mean()), se, n


def _z(d: float, se: float, direction: str) -> float:
    if not (math.isfinite(d) and math.isfinite(se)):
        return float("nan")
    if se == 0:
        return 0.0 if d == 0 else math.copysign(math.inf, d if direction == "higher" else -d)
    return d / se if direction == "higher" else -d / se


def separation_mark(d: float, se: float, direction: str, z: float = 2.0) -> str:
    """``"+"`` / ``"++"``: the first of a pair better beyond ``z`` / ``z + 1`` s.e.; ``"-"`` / ``"--"``: worse."""
    zz = _z(d, se, direction)
    if math.isnan(zz) or abs(zz) <= z:
        return ""
    return ("+" if zz > 0 else "-") * (2 if abs(zz) > z + 1 else 1)


def random_map_verdict(
    scores: Mapping[str, Mapping[str, Any]],
    control: str = "random",
    *,
    directions: Mapping[str, str] | None = None,
    z: float = 2.0,
    min_share: float = 0.5,
) -> dict[str, MetricVerdict]:
    """Per metric, whether each method separates from the random-map ``control``.

    Args:
        scores: ``{metric: {method: per-image values}}``, the control among the methods;
            values as :func:`paired_difference` takes them (the same images on both sides).
        control: the name of the random-map method in ``scores``.
        directions: ``{metric: "higher" | "lower"}`` for metrics not in
            :data:`cleargrad.metrics.METRICS` (registered ones use their direction).
        z: standard errors a difference must exceed to count (see the module docstring).
        min_share: the share of methods that must separate for the metric to be informative
            (``ceil(min_share * n_methods)``; default one half).

    Returns:
        ``{metric: MetricVerdict}``.
    """
    if z <= 0 or not (0 < min_share <= 1):
        raise ConfigError(f"need z > 0 and 0 < min_share <= 1, got z={z}, min_share={min_share}")
    out: dict[str, MetricVerdict] = {}
    for metric, by_method in scores.items():
        if control not in by_method:
            raise InputError(f"metric {metric!r} has no scores of the control {control!r}; "
                             f"methods: {sorted(by_method)}")
        direction = (directions or {}).get(metric) or (METRICS[metric].direction if metric in METRICS else None)
        if direction not in ("higher", "lower"):
            raise ConfigError(f"give the direction of metric {metric!r} in directions= ('higher' or 'lower')")
        seps = []
        for method, v in by_method.items():
            if method == control:
                continue
            d, se, n = paired_difference(v, by_method[control])
            zz = _z(d, se, direction)
            seps.append(Separation(method, d, se, n, zz, bool(zz > z), bool(zz < -z)))
        need = math.ceil(min_share * len(seps))
        informative = bool(seps) and sum(s.better for s in seps) >= need
        out[metric] = MetricVerdict(metric, direction, tuple(seps), informative)
    return out


def format_verdicts(verdicts: Mapping[str, MetricVerdict], digits: int = 4) -> list[str]:
    """Plain-text lines (terminal summary): one per metric, with each method's ``d ± se`` and mark."""
    lines = []
    for v in verdicts.values():
        parts = []
        for s in v.separations:
            mk = "+" if s.better else ("-" if s.worse else "")
            se = f" ± {s.se:.{digits}f}" if math.isfinite(s.se) else ""
            parts.append(f"{s.method} {s.mean:+.{digits}f}{se}{mk}")
        lines.append(f"{v.metric}: {v.summary()} [{'; '.join(parts)}]")
    return lines
