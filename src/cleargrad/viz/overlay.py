"""Heatmap overlays as uint8 RGB arrays and PNG files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from PIL import Image

from ..errors import ConfigError, InputError
from .arrays import as_heatmap, as_mask, as_rgb, normalize_map, resize_map

__all__ = ["colorize", "mask_outline", "overlay", "save_overlay"]


def colorize(heatmap: Any, cmap: str = "jet") -> np.ndarray:
    """A heatmap, min-max normalised per image, through a matplotlib colormap: float64
    HxWx3 in [0, 1]."""
    try:
        cm = colormaps[cmap]
    except KeyError:
        raise ConfigError(f"unknown matplotlib colormap {cmap!r}") from None
    return cm(normalize_map(as_heatmap(heatmap)))[..., :3]


def mask_outline(mask: Any) -> np.ndarray:
    """The boundary of a region: mask pixels with at least one 4-neighbour outside the
    mask (or on the image border). Bool (H, W)."""
    m = as_mask(mask)
    p = np.pad(m, 1, constant_values=False)
    interior = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~interior


def overlay(
    image: Any,
    heatmap: Any,
    alpha: float = 0.5,
    cmap: str = "jet",
    mask: Any = None,
    mask_color: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Blend a colour-mapped heatmap over an image.

    Args:
        image: (H,W), (C,H,W), (H,W,C) or a batch of one, grayscale or RGB, tensor or
            array (see :func:`cleargrad.viz.arrays.as_rgb` for value ranges).
        heatmap: a 2-D map (or a one-/three-channel attribution, see
            :func:`cleargrad.viz.arrays.as_heatmap`), normalised per image to [0, 1];
            resized bilinearly to the image when its size differs.
        alpha: weight of the heatmap, in [0, 1].
        cmap: matplotlib colormap name.
        mask: optional boolean region (H, W) whose outline is drawn on top.
        mask_color: RGB colour of the outline.

    Returns:
        uint8 array (H, W, 3).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
    rgb = as_rgb(image)
    heat = as_heatmap(heatmap)
    heat = resize_map(heat, rgb.shape[:2])
    blended = (1.0 - alpha) * rgb + alpha * colorize(heat, cmap)
    out = np.clip(np.rint(blended * 255.0), 0, 255).astype(np.uint8)
    if mask is not None:
        edge = mask_outline(mask)
        if edge.shape != out.shape[:2]:
            raise InputError(f"mask shape {edge.shape} does not match the image {out.shape[:2]}")
        out[edge] = np.asarray(mask_color, dtype=np.uint8)
    return out


def save_overlay(
    path: str | os.PathLike, image: Any, heatmap: Any, alpha: float = 0.5, cmap: str = "jet", mask: Any = None
) -> Path:
    """Write :func:`overlay` as a PNG file (parent folders are created). Returns the path."""
    from ..atomic import atomic_write

    p = Path(path)
    im = Image.fromarray(overlay(image, heatmap, alpha=alpha, cmap=cmap, mask=mask))
    atomic_write(p, lambda tmp: im.save(tmp, format="PNG"))
    return p
