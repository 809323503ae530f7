"""Visualisation: heatmap overlays (uint8 arrays, PNG files) and method-comparison grids.
Rendering is headless (Pillow and matplotlib's Agg canvas; pyplot is never used)."""

from .arrays import as_heatmap, as_mask, as_rgb, normalize_map, resize_map
from .grid import GridRow, figure_grid
from .overlay import colorize, mask_outline, overlay, save_overlay

__all__ = [
    "GridRow",
    "as_heatmap",
    "as_mask",
    "as_rgb",
    "colorize",
    "figure_grid",
    "mask_outline",
    "normalize_map",
    "overlay",
    "resize_map",
    "save_overlay",
]
