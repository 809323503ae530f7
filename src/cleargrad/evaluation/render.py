"""Overlay PNGs written by the command: the explanation's 2-D importance
(:func:`cleargrad.core.to_2d`, the same reduction the metrics use) blended over the image
with :func:`cleargrad.viz.overlay`."""

from __future__ import annotations

import io

import torch

from ..core import to_2d

__all__ = ["input_png", "overlay_png"]

#: overlays of small images are enlarged (nearest neighbour) to at least this many pixels
MIN_SIDE = 112


def overlay_png(image: torch.Tensor, attribution: torch.Tensor) -> bytes:
    """PNG bytes of the overlay of ``attribution`` (``(C, H, W)``, any C) on ``image``
    (``(C, H, W)`` in [0, 1]), enlarged to at least ``MIN_SIDE`` pixels."""
    from PIL import Image

    from ..viz import overlay

    heat = to_2d(attribution.detach().float().cpu().unsqueeze(0))[0, 0]
    im = Image.fromarray(overlay(image.detach().float().cpu().clamp(0, 1), heat))
    side = min(im.size)
    if side < MIN_SIDE:
        k = -(-MIN_SIDE // side)
        im = im.resize((im.size[0] * k, im.size[1] * k), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def input_png(image: torch.Tensor) -> bytes:
    """PNG bytes of a model input ``(C, H, W)`` in [0, 1] (1 or 3 channels) at its own size."""
    from PIL import Image

    arr = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    arr = arr[0] if arr.shape[0] == 1 else arr[:3].permute(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(arr.numpy()).save(buf, format="PNG")
    return buf.getvalue()
