"""Visualisation: matplotlib Figures for notebooks (one explanation with its colour bar
and caption; a grid of methods x images), heatmap overlays (uint8 arrays, PNG files).
Figures are returned, and saved only when a path is given. Rendering is headless (Pillow
and matplotlib's Agg canvas; pyplot is never used)."""

from .annotated import explanation_figure, explanation_png, save_figure
from .arrays import as_heatmap, as_mask, as_rgb, normalize_map, resize_map
from .grid import GridRow, figure_grid
from .overlay import colorize, mask_outline, overlay, save_overlay

__all__ = [
    "GridRow",
    "as_heatmap",
    "as_mask",
    "as_rgb",
    "colorize",
    "explanation_figure",
    "explanation_png",
    "figure_grid",
    "mask_outline",
    "normalize_map",
    "overlay",
    "resize_map",
    "save_figure",
    "save_overlay",
]
