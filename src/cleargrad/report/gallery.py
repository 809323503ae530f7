"""The report gallery: the input and each method's map on one colour scale, enlarged by
a whole factor (never shrunk), region hulls on GAD and its base method."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .plots import png_uri

__all__ = ["GalleryTable", "Thumb", "build_gallery", "gallery_order", "CMAP", "MIN_SIDE"]

#: colour map of every map in the gallery (its legend is drawn once)
CMAP = "jet"
#: small inputs are enlarged (nearest neighbour) by a whole factor to at least this side
MIN_SIDE = 84
#: width budget of one gallery table, px (the page's content column is 1180 px wide)
TABLE_WIDTH = 1120


@dataclass
class Thumb:
    """One picture of the gallery: a data URI, its display size and a description."""

    uri: str
    width: int
    height: int
    alt: str


@dataclass
class GalleryTable:
    """Rows of images × a slice of the methods (so that no table is wider than the page)."""

    methods: list[str]
    rows: list[tuple[str, str | None, Thumb | None, list[Thumb | None]]]


def gallery_order(methods: Sequence[str], gad_base: dict[str, str]) -> list[str]:
    """``methods`` with each GAD method placed right after its base method."""
    gads = {g for g in gad_base if g in methods}
    out: list[str] = []
    for m in methods:
        if m in gads:
            continue
        out.append(m)
        out += sorted(g for g in gads if gad_base[g] == m)
    out += sorted(g for g in gads if g not in out)
    return out


def _png(arr: np.ndarray, scale: int) -> bytes:
    from PIL import Image

    im = Image.fromarray(arr)
    if scale > 1:
        im = im.resize((im.size[0] * scale, im.size[1] * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _input_rgb(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def build_gallery(
    images: Sequence[str],
    classes: dict[str, str | None],
    methods: Sequence[str],
    inputs: dict[str, bytes],
    maps: dict[tuple[str, str], np.ndarray],
    overlays: dict[tuple[str, str], bytes],
    hull_methods: set[str],
) -> list[GalleryTable]:
    """Tables of thumbnails: an image column, the input, then the methods.

    Maps (stored as 2-D arrays) are blended over the input with :data:`CMAP`, each map
    scaled to its own min–max (one legend serves all); methods in ``hull_methods`` get the
    outline of their convex-hull region (:func:`cleargrad.metrics.convex_hull_region`).
    Without stored maps the stored overlay PNGs are shown as they are.
    """
    from ..metrics import convex_hull_region
    from ..viz import overlay

    cells: dict[tuple[str, str], Thumb] = {}
    firsts: dict[str, Thumb] = {}
    side = 0
    for i in images:
        rgb = _input_rgb(inputs[i]) if i in inputs else None
        for m in methods:
            if (i, m) in maps and rgb is not None:
                heat = maps[(i, m)]
                scale = max(1, math.ceil(MIN_SIDE / min(rgb.shape[:2])))
                mask = None
                if m in hull_methods:
                    from ..viz.arrays import resize_map

                    mask = convex_hull_region(resize_map(heat, rgb.shape[:2])).numpy()
                arr = overlay(rgb, heat, cmap=CMAP, mask=mask, mask_color=(255, 255, 255))
                h, w = arr.shape[0] * scale, arr.shape[1] * scale
                hull = ", white line: convex-hull region" if mask is not None else ""
                cells[(i, m)] = Thumb(png_uri(_png(arr, scale)), w, h, f"{m} map of {i}{hull}")
            elif (i, m) in overlays:
                from PIL import Image

                im = Image.open(io.BytesIO(overlays[(i, m)]))
                cells[(i, m)] = Thumb(png_uri(overlays[(i, m)]), im.size[0], im.size[1], f"{m} overlay of {i}")
            if (i, m) in cells:
                side = max(side, cells[(i, m)].width)
        if rgb is not None:
            scale = max(1, math.ceil(MIN_SIDE / min(rgb.shape[:2])))
            firsts[i] = Thumb(
                png_uri(_png(rgb, scale)), rgb.shape[1] * scale, rgb.shape[0] * scale, f"input {i}"
            )
            side = max(side, firsts[i].width)
    side = side or MIN_SIDE
    per_table = max(1, (TABLE_WIDTH - 120) // (side + 12) - 1)  # minus the image-name and input columns
    n_tables = max(1, math.ceil(len(methods) / per_table))
    per_table = math.ceil(len(methods) / n_tables) if methods else 1  # balanced: no table of one method
    tables = []
    for start in range(0, len(methods), per_table):
        chunk = list(methods[start : start + per_table])
        rows = [(i, classes.get(i), firsts.get(i), [cells.get((i, m)) for m in chunk]) for i in images]
        tables.append(GalleryTable(chunk, rows))
    return tables
