"""One explanation as a self-describing figure: the input, the map over it with a colour
bar in the map's own units, and a caption (method, class, probability, ...). A matplotlib
``Figure`` (shown inline by Jupyter), written to a file only when asked."""

from __future__ import annotations

import io
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ..errors import ConfigError
from .arrays import as_heatmap, as_rgb, resize_map

__all__ = ["explanation_figure", "explanation_png"]


def explanation_figure(
    image: Any,
    heatmap: Any,
    caption: str = "",
    *,
    cmap: str = "jet",
    alpha: float = 0.5,
    colorbar_label: str = "importance",
    panel_size: float = 3.0,
    dpi: int = 100,
    path: str | os.PathLike | None = None,
) -> Figure:
    """A two-panel matplotlib ``Figure``: ``image`` (left) and ``heatmap`` blended over it
    (right) with a colour bar, under ``caption`` (wrapped; newlines kept). In a notebook the
    returned figure is shown inline; nothing is written unless ``path`` is given.

    Args:
        image: the input (any layout :func:`cleargrad.viz.arrays.as_rgb` accepts).
        heatmap: a 2-D map or an attribution (reduced as :func:`cleargrad.viz.arrays.as_heatmap`
            does); resized bilinearly to the image. The colour bar spans the map's own
            minimum and maximum, in its units (not rescaled to [0, 1]).
        caption: text above the panels.
        cmap, alpha: colour map and weight of the map over the image.
        colorbar_label: label of the colour bar.
        panel_size: panel size in inches; ``dpi``: resolution (a panel is ``panel_size * dpi`` pixels).
        path: if given, the figure is also saved there (format from the suffix, PNG by
            default; parent folders are created).

    Small images are drawn with nearest-neighbour interpolation (pixels stay visible).
    Rendering uses matplotlib's Agg canvas only (no display, no pyplot state).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
    try:
        cm = colormaps[cmap]
    except KeyError:
        raise ConfigError(f"unknown matplotlib colormap {cmap!r}") from None
    rgb = as_rgb(image)
    heat = resize_map(as_heatmap(heatmap), rgb.shape[:2])
    lo, hi = float(heat.min()), float(heat.max())
    if hi <= lo:  # a constant map: an honest flat bar around its value
        lo, hi = lo - 0.5, hi + 0.5
    norm = Normalize(vmin=lo, vmax=hi)
    lines = [textwrap.fill(line, width=int(16 * panel_size * 2)) for line in caption.splitlines() or [""]]
    n_lines = sum(line.count("\n") + 1 for line in lines)
    fig = Figure(figsize=(panel_size * 2 + 0.9, panel_size + 0.22 * n_lines + 0.2), dpi=dpi)
    FigureCanvasAgg(fig)
    top = 1 - (0.22 * n_lines + 0.15) / (panel_size + 0.22 * n_lines + 0.2)
    ax_in = fig.add_axes((0.02, 0.03, 0.40, top - 0.05))
    ax_map = fig.add_axes((0.45, 0.03, 0.40, top - 0.05))
    ax_bar = fig.add_axes((0.87, 0.06, 0.025, top - 0.11))
    interp = "nearest" if max(rgb.shape[:2]) < 128 else "antialiased"
    ax_in.imshow(rgb, interpolation=interp)
    ax_in.set_title("input", fontsize=8)
    blended = (1 - alpha) * rgb + alpha * cm(norm(heat))[..., :3]
    ax_map.imshow(np.clip(blended, 0, 1), interpolation=interp)
    ax_map.set_title("explanation", fontsize=8)
    for ax in (ax_in, ax_map):
        ax.set_xticks([])
        ax.set_yticks([])
    bar = fig.colorbar(_mappable(cm, norm), cax=ax_bar)
    bar.set_label(colorbar_label, fontsize=7)
    bar.ax.tick_params(labelsize=6)
    fig.text(0.02, 0.985, "\n".join(lines), ha="left", va="top", fontsize=8, family="sans-serif", parse_math=False)
    if path is not None:
        save_figure(fig, path)
    return fig


def explanation_png(image: Any, heatmap: Any, caption: str = "", **options: Any) -> bytes:
    """:func:`explanation_figure` rendered as PNG bytes (what ``cleargrad explain`` writes);
    takes the same options except ``path``."""
    buf = io.BytesIO()
    explanation_figure(image, heatmap, caption, **options).savefig(buf, format="png")
    return buf.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Save ``fig`` to ``path`` (format from the suffix; parent folders are created), atomically:
    a reader never sees a half-written file (:func:`cleargrad.atomic.atomic_write`)."""
    from ..atomic import atomic_write

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fmt = p.suffix.lstrip(".").lower() or "png"
    atomic_write(p, lambda tmp: fig.savefig(tmp, format=fmt))
    return p


def _mappable(cm: Any, norm: Normalize) -> Any:
    """A ScalarMappable for a colour bar of ``cm`` over ``norm``."""
    from matplotlib.cm import ScalarMappable

    sm = ScalarMappable(norm=norm, cmap=cm)
    sm.set_array([])
    return sm
