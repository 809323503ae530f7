"""Operations on maps and images shared by the methods, metrics, GAD and figures: per-image
normalisation, bilinear (trilinear for volumes) upsampling and the two Gaussian blurs.

Every function works per image on an ``(N, ...)`` batch, on the input's device and dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "NORMALIZE_EPS",
    "gaussian_blur",
    "max_normalize",
    "minmax_normalize",
    "rise_blur",
    "rise_blur_kernel",
    "upsample_maps",
]

#: eps of the per-image min–max normalisation (spec § 0)
NORMALIZE_EPS = 1e-8


def minmax_normalize(maps: torch.Tensor, eps: float = NORMALIZE_EPS) -> torch.Tensor:
    """Per-image min–max normalisation of ``(N, ...)`` maps to ``[0, 1]``:
    ``(L - min) / (max - min + eps)``.

    A constant map (e.g. all zero) becomes all zero, never NaN; with ``eps=0`` the division
    is exact (``max`` maps to exactly 1) and a constant map still becomes zero.
    """
    flat = maps.reshape(maps.shape[0], -1)
    view = (-1, *([1] * (maps.dim() - 1)))
    lo = flat.amin(dim=1).view(view)
    hi = flat.amax(dim=1).view(view)
    if eps:
        return (maps - lo) / (hi - lo + eps)
    span = hi - lo
    live = span > 0
    return torch.where(live, (maps - lo) / torch.where(live, span, torch.ones_like(span)), torch.zeros_like(maps))


def max_normalize(s: torch.Tensor) -> torch.Tensor:
    """``S / max(S)`` per image of ``(N, ...)`` maps; an all-zero map stays all zero.

    Dividing by the maximum itself (no epsilon) makes the result the same for any
    positive rescaling of ``S``.
    """
    m = s.reshape(s.shape[0], -1).amax(1).view(-1, *([1] * (s.dim() - 1)))
    return s / torch.where(m > 0, m, torch.ones_like(m))


def upsample_maps(maps: torch.Tensor, size: Sequence[int], *, align_corners: bool = False) -> torch.Tensor:
    """Resize ``(N, C, h, w)`` maps to ``size = (H, W)`` (bilinear), or ``(N, C, d, h, w)``
    volume maps to ``size = (D, H, W)`` (trilinear); ``align_corners=False`` by default.
    Maps already of that size are returned as they are."""
    size = tuple(int(s) for s in size)
    if len(size) != maps.dim() - 2 or len(size) not in (2, 3):
        raise ValueError(f"cannot resize maps of shape {tuple(maps.shape)} to {size}: need 2 or 3 matching sizes")
    if tuple(maps.shape[2:]) == size:
        return maps
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return F.interpolate(maps, size=size, mode=mode, align_corners=align_corners)


def rise_blur_kernel(klen: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """The RISE blur kernel: a centred delta Gaussian-filtered by scipy (reflect boundary).

    Returns a ``(klen, klen)`` float64 tensor. With the reflect boundary the mass the
    Gaussian would put outside the window is folded back in, so the kernel sums to 1.

    Raises:
        ConfigError: ``klen < 1`` or ``sigma < 0``.
    """
    import numpy as np
    from scipy.ndimage import gaussian_filter

    from ..errors import ConfigError

    if klen < 1 or sigma < 0:
        raise ConfigError(f"need klen >= 1 and sigma >= 0, got klen={klen}, sigma={sigma}")
    delta = np.zeros((klen, klen))
    delta[klen // 2, klen // 2] = 1.0
    return torch.from_numpy(gaussian_filter(delta, sigma, mode="reflect"))


def rise_blur(x: torch.Tensor, klen: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Blur each channel of ``x`` with :func:`rise_blur_kernel` (``conv2d``, zero padding
    ``klen // 2``): the blurred canvas of the insertion/deletion curves."""
    c = x.shape[1]
    k = rise_blur_kernel(klen, sigma).to(device=x.device, dtype=x.dtype)
    weight = k.expand(c, 1, klen, klen)
    return F.conv2d(x, weight, padding=klen // 2, groups=c)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each channel of ``(N, C, H, W)`` images blurred by a separable Gaussian of std
    ``sigma`` pixels (half-width ``ceil(2 sigma)``, at most the image's side minus one;
    reflect padding, so the image keeps its size and its border values' weight)."""
    half = max(1, min(int(math.ceil(2 * sigma)), min(x.shape[-2:]) - 1))
    ax = torch.arange(-half, half + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (ax / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    out = F.pad(x, (half, half, half, half), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
