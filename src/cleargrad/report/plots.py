"""Matplotlib figures of the report, returned as PNG data URIs (Agg backend, no window)."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import numpy as np

from .stats import MeanCI

__all__ = ["colour_scale_uri", "curves_uri", "curve_style", "png_uri", "strip_plot_uri"]

#: figure width in inches at :data:`DPI`: 1100 px, narrower than the page's content column
WIDTH_IN = 11.0
DPI = 100


def png_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fig_uri(fig) -> str:  # noqa: ANN001 - a matplotlib Figure
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return png_uri(buf.getvalue())


def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def strip_plot_uri(
    metric: str,
    methods: Sequence[str],
    values: dict[str, list[float]],
    cis: dict[str, MeanCI],
    direction: str,
) -> str:
    """Per-image values of one metric by method (jittered dots), with each method's mean
    and 95 % interval as a black bar; one row per method."""
    plt = _pyplot()
    n = len(methods)
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 0.9 + 0.28 * n), layout="constrained")
    rng = np.random.default_rng(0)
    for row, m in enumerate(methods):
        v = np.asarray(values.get(m, []), dtype=float)
        v = v[np.isfinite(v)]
        y = row + rng.uniform(-0.18, 0.18, size=v.size)
        ax.scatter(v, y, s=10, alpha=0.55, color="#3b75af", linewidths=0)
        c = cis.get(m)
        if c is not None and c.mean is not None:
            if c.low is not None and c.high is not None:
                ax.plot([c.low, c.high], [row, row], color="black", lw=2.2)
            ax.plot([c.mean], [row], marker="|", color="black", ms=14, mew=2.2)
    ax.set_yticks(range(n), list(methods), fontsize=9)
    ax.set_ylim(n - 0.5, -0.5)
    better = "higher is better" if direction == "higher" else "lower is better"
    ax.set_xlabel(f"{metric} per image ({better}); black: mean and 95 % CI", fontsize=9)
    ax.grid(axis="x", color="#ddd", lw=0.6)
    ax.tick_params(axis="x", labelsize=8)
    return _fig_uri(fig)


def curve_style(k: int) -> tuple[tuple[float, float, float, float], str]:
    """``(colour, line style)`` of the ``k``-th method's curve: ten distinct hues
    (matplotlib's ``tab10``), then the same hues dashed, dotted, dash-dotted."""
    import matplotlib

    return matplotlib.colormaps["tab10"](k % 10), ["-", "--", ":", "-."][(k // 10) % 4]


def curves_uri(metric: str, methods: Sequence[str], mean_curves: dict[str, np.ndarray], n: dict[str, int]) -> str:
    """Mean curve of a curve metric (insertion, deletion) per method: model score
    against the fraction of pixels inserted or deleted."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 4.6), layout="constrained")
    for k, m in enumerate(methods):
        c = mean_curves.get(m)
        if c is None:
            continue
        x = np.linspace(0.0, 1.0, len(c))
        colour, style = curve_style(k)
        ax.plot(x, c, color=colour, ls=style, lw=1.4, label=f"{m} (n={n.get(m, 0)})")
    what = "inserted" if "insert" in metric else "deleted" if "delet" in metric else "perturbed"
    ax.set_xlabel(f"fraction of pixels {what} (most important first)", fontsize=9)
    ax.set_ylabel("model score of the explained class", fontsize=9)
    ax.set_xlim(0, 1)
    ax.grid(color="#ddd", lw=0.6)
    ax.legend(fontsize=7.5, ncol=max(1, math.ceil(len(methods) / 12)), loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _fig_uri(fig)


def colour_scale_uri(cmap: str = "jet") -> str:
    """A horizontal colour bar from the lowest to the highest value of a map."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(3.2, 0.55), layout="constrained")
    ax.imshow(np.linspace(0, 1, 256)[None, :], aspect="auto", cmap=cmap, extent=(0, 1, 0, 1))
    ax.set_yticks([])
    ax.set_xticks([0, 0.5, 1], ["min", "", "max"], fontsize=8)
    return _fig_uri(fig)
