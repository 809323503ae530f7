"""Turning images, heatmaps and masks (tensors or arrays, with or without batch and
channel axes) into plain 2-D / HxWx3 numpy arrays for display."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..core.maps import minmax_normalize
from ..errors import InputError

__all__ = ["as_rgb", "as_heatmap", "as_mask", "normalize_map", "resize_map"]


def _numpy(a: Any, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().to("cpu")
        a = a.float() if a.is_floating_point() else a
        a = a.numpy()
    arr = np.asarray(a)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]  # a batch of one
    if arr.ndim not in (2, 3):
        raise InputError(f"{name} must be one image (H,W), (C,H,W) or (H,W,C), got shape {arr.shape}")
    return arr


def _channels_last(arr: np.ndarray) -> np.ndarray:
    """(C,H,W) -> (H,W,C) when the first axis looks like channels; (H,W) -> (H,W,1)."""
    if arr.ndim == 2:
        return arr[..., None]
    if arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        return np.moveaxis(arr, 0, -1)
    if arr.shape[-1] in (1, 3):
        return arr
    if arr.shape[0] in (1, 3):
        return np.moveaxis(arr, 0, -1)
    raise InputError(f"cannot tell the channel axis of an image of shape {arr.shape} (need 1 or 3 channels)")


def as_rgb(image: Any) -> np.ndarray:
    """An image as float64 HxWx3 in [0, 1].

    Accepts (H,W), (C,H,W), (H,W,C) or a batch of one, with C = 1 or 3, as tensor or
    array. uint8 is divided by 255; floats already in [0, 1] are kept; other floats (for
    example normalised inputs) are min-max scaled to [0, 1].
    """
    arr = _channels_last(_numpy(image, "image"))
    if arr.dtype == np.uint8:
        out = arr.astype(np.float64) / 255.0
    else:
        out = arr.astype(np.float64)
        if not np.isfinite(out).all():
            raise InputError("image contains NaN or Inf")
        lo, hi = out.min(), out.max()
        if lo < 0.0 or hi > 1.0:
            out = (out - lo) / (hi - lo) if hi > lo else np.zeros_like(out)
    return np.repeat(out, 3, axis=-1) if out.shape[-1] == 1 else out


def as_heatmap(heatmap: Any) -> np.ndarray:
    """A heatmap as float64 (H, W). A one-channel map is taken as is (signed values
    kept); a 3-channel attribution is reduced with ``|sum over channels|`` (the library's
    default 2-D reduction)."""
    arr = _numpy(heatmap, "heatmap").astype(np.float64)
    if arr.ndim == 3:
        arr = _channels_last(arr)
        arr = arr[..., 0] if arr.shape[-1] == 1 else np.abs(arr.sum(axis=-1))
    if not np.isfinite(arr).all():
        raise InputError("heatmap contains NaN or Inf")
    return arr


def as_mask(mask: Any) -> np.ndarray:
    """A region mask as bool (H, W) (anything non-zero is inside)."""
    arr = _numpy(mask, "mask")
    if arr.ndim == 3:
        arr = _channels_last(arr)[..., 0]
    return arr.astype(bool)


def normalize_map(m: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1]; a constant map becomes all zeros."""
    t = torch.from_numpy(np.asarray(m, dtype=np.float64))
    return minmax_normalize(t[None], eps=0.0)[0].numpy()


def resize_map(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to ``shape`` (align_corners=False, as the CAMs use)."""
    if m.shape == tuple(shape):
        return m
    t = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float64))[None, None]
    return torch.nn.functional.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0].numpy()
