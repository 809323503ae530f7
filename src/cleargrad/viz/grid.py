"""Method-comparison figures: one row per image, the image then one overlay per method."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import ConfigError
from .arrays import as_mask, as_rgb
from .overlay import overlay

__all__ = ["GridRow", "figure_grid"]


@dataclass
class GridRow:
    """One row of :func:`figure_grid`.

    Attributes:
        title: row label (e.g. the true and predicted class).
        image: the input image (any layout :func:`cleargrad.viz.arrays.as_rgb` accepts).
        heatmaps: one map per column, as a sequence or as ``{column title: map}``.
        mask: optional boolean region whose outline is drawn on every panel of the row.
    """

    title: str
    image: Any
    heatmaps: Sequence[Any] | Mapping[str, Any] = field(default_factory=list)
    mask: Any = None


def _row(r: Any) -> GridRow:
    if isinstance(r, GridRow):
        return r
    if isinstance(r, Sequence) and not isinstance(r, str) and len(r) >= 2:
        title, image, *rest = r
        if len(rest) == 1 and isinstance(rest[0], (Mapping, list, tuple)):
            return GridRow(str(title), image, rest[0])
        return GridRow(str(title), image, list(rest))
    raise ConfigError("each row must be a GridRow or a tuple (title, image, heatmaps...)")


def figure_grid(
    rows: Sequence[Any],
    path: str | os.PathLike,
    *,
    column_titles: Sequence[str] | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    panel_size: float = 1.8,
    dpi: int = 100,
    mask_color: str = "white",
) -> Path:
    """Save a grid figure comparing heatmaps: row = image, column = method.

    Args:
        rows: :class:`GridRow` objects or tuples ``(title, image, heatmaps)`` (heatmaps a
            list or a ``{column title: map}`` dict) or ``(title, image, map1, map2, ...)``.
            All rows need the same number of heatmaps.
        path: output file (PNG, or any format matplotlib writes from the suffix); parent
            folders are created.
        column_titles: titles of the heatmap columns (default: the dict keys of the first
            row, else none); the first column is always the input image.
        alpha, cmap: overlay settings (see :func:`cleargrad.viz.overlay`).
        panel_size: size of one panel in inches.
        dpi: resolution.
        mask_color: colour of region outlines (drawn with ``contour`` at level 0.5).

    Returns:
        The path written. Rendering uses the Agg backend only (no display needed).
    """
    grid = [_row(r) for r in rows]
    if not grid:
        raise ConfigError("figure_grid needs at least one row")
    counts = {len(r.heatmaps) for r in grid}
    if len(counts) != 1:
        raise ConfigError(f"all rows need the same number of heatmaps, got {sorted(counts)}")
    ncols = 1 + counts.pop()
    if column_titles is None and isinstance(grid[0].heatmaps, Mapping):
        column_titles = list(grid[0].heatmaps)
    if column_titles is not None and len(column_titles) != ncols - 1:
        raise ConfigError(f"{len(column_titles)} column titles for {ncols - 1} heatmap columns")
    fig = Figure(figsize=(panel_size * ncols, panel_size * len(grid)), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(grid), ncols, squeeze=False)
    for i, r in enumerate(grid):
        maps = list(r.heatmaps.values()) if isinstance(r.heatmaps, Mapping) else list(r.heatmaps)
        mask = as_mask(r.mask) if r.mask is not None else None
        panels = [as_rgb(r.image)] + [overlay(r.image, h, alpha=alpha, cmap=cmap) for h in maps]
        for j, (ax, panel) in enumerate(zip(axes[i], panels)):
            ax.imshow(panel, interpolation="nearest")
            if mask is not None:
                ax.contour(mask.astype(float), levels=[0.5], colors=[mask_color], linewidths=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(r.title, fontsize=8)
            if i == 0:
                ax.set_title("input" if j == 0 else (column_titles[j - 1] if column_titles else ""), fontsize=8)
    fig.tight_layout()
    from ..atomic import atomic_write

    p = Path(path)
    fmt = p.suffix.lstrip(".").lower() or "png"
    atomic_write(p, lambda tmp: fig.savefig(tmp, format=fmt))
    return p
