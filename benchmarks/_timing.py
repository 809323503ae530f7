"""Small shared timing helper for the benchmarks: warm-up, interleaved repeats, median/IQR.

    from _timing import interleaved, markdown_table, fmt_s

    stats = interleaved({"ours": lambda: f(x), "captum": lambda: g(x)}, repeats=5)
    print(stats["ours"].median, stats["ours"].iqr)

Interleaving: every round runs each candidate once, alternating the order (A B C, then
C B A, ...), so a slow phase of a shared machine hits all candidates alike. Each
candidate first runs ``warmup`` untimed times (allocator, caches, lazy init).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Stats", "timed", "interleaved", "fmt_s", "markdown_table", "paired_ratio"]


@dataclass
class Stats:
    """Timings of one candidate, in seconds."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def q1(self) -> float:
        return _quantile(self.samples, 0.25)

    @property
    def q3(self) -> float:
        return _quantile(self.samples, 0.75)

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def __str__(self) -> str:
        return f"{fmt_s(self.median)} (IQR {fmt_s(self.iqr)}, n={len(self.samples)})"


def _quantile(xs: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), without numpy."""
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of ``fn``."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(runs: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict[str, Stats]:
    """Time each callable ``repeats`` times, interleaved, after ``warmup`` untimed calls."""
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    stats = {name: Stats() for name in names}
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            stats[name].samples.append(timed(runs[name]))
    return stats


def fmt_s(seconds: float) -> str:
    """Seconds with a unit that keeps 3 significant digits."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, int]:
    """Mean and standard error of the paired ratios ``a[i] / b[i]``, and their count (the
    standard error is NaN below two pairs)."""
    r = [x / y for x, y in zip(a, b)]
    se = statistics.stdev(r) / len(r) ** 0.5 if len(r) > 1 else float("nan")
    return statistics.mean(r), se, len(r)
