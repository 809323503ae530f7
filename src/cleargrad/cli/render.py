"""Overlay PNGs written by the command (heatmap blended over the image)."""

from __future__ import annotations

import io

import numpy as np
import torch

from ..core import to_2d

__all__ = ["heatmap_rgb", "overlay_png"]

#: overlays of small images are enlarged (nearest neighbour) to at least this many pixels
MIN_SIDE = 112


def heatmap_rgb(image: torch.Tensor, attribution: torch.Tensor, alpha: float = 0.5) -> np.ndarray:
    """``(H, W, 3)`` uint8: the 2-D importance of ``attribution`` (``|sum_c a_c|``, min-max
    scaled) in the ``jet`` colour map, blended with ``image`` (``(C, H, W)`` in [0, 1])."""
    from matplotlib import colormaps

    s = to_2d(attribution.detach().float().unsqueeze(0))[0, 0]
    if s.shape != image.shape[-2:]:
        s = torch.nn.functional.interpolate(s[None, None], size=image.shape[-2:], mode="bilinear", align_corners=False)[
            0, 0
        ]
    lo, hi = float(s.min()), float(s.max())
    s = (s - lo) / (hi - lo) if hi > lo else torch.zeros_like(s)
    heat = colormaps["jet"](s.numpy())[..., :3]
    img = image.detach().float().clamp(0, 1)
    base = img.expand(3, -1, -1) if img.shape[0] == 1 else img[:3]
    out = (1 - alpha) * base.permute(1, 2, 0).numpy() + alpha * heat
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def overlay_png(image: torch.Tensor, attribution: torch.Tensor) -> bytes:
    """PNG bytes of :func:`heatmap_rgb`, enlarged to at least ``MIN_SIDE`` pixels."""
    from PIL import Image

    rgb = heatmap_rgb(image, attribution)
    im = Image.fromarray(rgb)
    side = min(im.size)
    if side < MIN_SIDE:
        k = -(-MIN_SIDE // side)
        im = im.resize((im.size[0] * k, im.size[1] * k), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
