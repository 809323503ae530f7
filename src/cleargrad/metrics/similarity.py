"""Similarity of two batches of maps, row by row, on their device.

Used by the randomisation sanity checks (:mod:`cleargrad.metrics.randomisation`):
Spearman rank correlation (average ranks for ties, as ``scipy.stats.spearmanr``),
Pearson correlation, SSIM of the 2-D maps (Wang et al. 2004 with scikit-image's
defaults: a 7x7 uniform window, ``K1 = 0.01``, ``K2 = 0.03``, sample covariances, the
mean over the window positions inside the map) and ``"ssim_flat"``, the same SSIM over
the flattened map with a 7-sample window, which is what Quantus computes when it calls
its SSIM on flattened explanations (its ``RandomLogit`` default). The SSIM data range is
``max - min`` over both maps of a pair, as in Quantus.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError, InputError

__all__ = ["SIMILARITIES", "pearson", "similarity", "spearman", "ssim", "ssim_flat"]

SIMILARITIES = ("spearman", "pearson", "ssim", "ssim_flat")


def _rows(a: torch.Tensor) -> torch.Tensor:
    return a.reshape(a.shape[0], -1).double()


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(N,)`` Pearson correlation of the flattened rows (NaN for a constant row)."""
    a, b = _rows(a), _rows(b)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    den = a.norm(dim=1) * b.norm(dim=1)
    r = (a * b).sum(1) / den
    return torch.where(den > 0, r, torch.full_like(r, float("nan"))).clamp(-1, 1)


def average_ranks(a: torch.Tensor) -> torch.Tensor:
    """``(N, F)`` 1-based ranks of each row, ties sharing their average rank."""
    a = _rows(a)
    s, order = a.sort(dim=1)
    if not bool((s[:, 1:] == s[:, :-1]).any()):  # no ties: the ordinal ranks
        r = torch.empty_like(a)
        r.scatter_(1, order, torch.arange(1, a.shape[1] + 1, dtype=a.dtype, device=a.device).expand_as(a))
        return r
    lo = torch.searchsorted(s, a, right=False)
    hi = torch.searchsorted(s, a, right=True)
    return (lo + hi + 1).double() / 2


def spearman(a: torch.Tensor, b: torch.Tensor, *, ranks_a: torch.Tensor | None = None) -> torch.Tensor:
    """``(N,)`` Spearman rank correlation of the flattened rows (``ranks_a``: :func:`average_ranks`
    of ``a`` when the caller compares one reference with many maps)."""
    return pearson(average_ranks(a) if ranks_a is None else ranks_a, average_ranks(b))


def _ssim_windows(a: torch.Tensor, b: torch.Tensor, pool, win: int) -> torch.Tensor:
    n = a.shape[0]
    lo = torch.minimum(a.reshape(n, -1).amin(1), b.reshape(n, -1).amin(1))
    hi = torch.maximum(a.reshape(n, -1).amax(1), b.reshape(n, -1).amax(1))
    data_range = (hi - lo).view(n, *([1] * (a.dim() - 1)))
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    np_ = win ** (a.dim() - 2)
    cov = np_ / (np_ - 1)
    ma, mb = pool(a), pool(b)
    vaa = cov * (pool(a * a) - ma * ma)
    vbb = cov * (pool(b * b) - mb * mb)
    vab = cov * (pool(a * b) - ma * mb)
    s = ((2 * ma * mb + c1) * (2 * vab + c2)) / ((ma * ma + mb * mb + c1) * (vaa + vbb + c2))
    return s.reshape(n, -1).mean(1)


def ssim(a: torch.Tensor, b: torch.Tensor, win: int = 7) -> torch.Tensor:
    """``(N,)`` SSIM of the ``(N, 1, H, W)`` (or ``(N, H, W)``) maps; both sides must be >= ``win``."""
    a = a.double().reshape(a.shape[0], 1, *a.shape[-2:])
    b = b.double().reshape(b.shape[0], 1, *b.shape[-2:])
    if min(a.shape[-2:]) < win:
        raise InputError(f"ssim needs maps of at least {win}x{win} pixels, got {tuple(a.shape[-2:])}")
    return _ssim_windows(a, b, lambda t: F.avg_pool2d(t, win, stride=1), win)


def ssim_flat(a: torch.Tensor, b: torch.Tensor, win: int = 7) -> torch.Tensor:
    """``(N,)`` SSIM of the flattened maps with a ``win``-sample window (Quantus's SSIM on flat arrays)."""
    a, b = _rows(a).unsqueeze(1), _rows(b).unsqueeze(1)
    if a.shape[-1] < win:
        raise InputError(f"ssim_flat needs maps of at least {win} values, got {a.shape[-1]}")
    return _ssim_windows(a, b, lambda t: F.avg_pool1d(t, win, stride=1), win)


def similarity(name: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(N,)`` similarity ``name`` (one of :data:`SIMILARITIES`) of the maps ``a`` and ``b``."""
    fns = {"spearman": spearman, "pearson": pearson, "ssim": ssim, "ssim_flat": ssim_flat}
    if name not in fns:
        raise ConfigError(f"similarity must be one of {SIMILARITIES}, got {name!r}")
    if a.shape != b.shape:
        raise InputError(f"maps of shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be compared")
    return fns[name](a, b)
